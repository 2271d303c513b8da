"""The one Dagster ``Definitions`` object: assets, checks, jobs, sensors and schedules wired to one resource."""

import dagster as dg

from assets.compaction import COMPACTION_ASSETS, COMPACTION_JOB
from assets.consolidation import CONSOLIDATION_ASSETS
from assets.features import FEATURE_ASSETS
from assets.resources import HarvestStorage
from assets.retention import segment_retention
from sensors.features import FEATURE_JOBS, FEATURE_SCHEDULES, FEATURE_SENSORS
from sensors.retention import segment_retention_schedule
from sensors.segments import COMPACTION_SENSORS

defs = dg.Definitions(
    assets=[*COMPACTION_ASSETS, *CONSOLIDATION_ASSETS, *FEATURE_ASSETS],
    jobs=[COMPACTION_JOB, segment_retention, *FEATURE_JOBS],
    sensors=[*COMPACTION_SENSORS, *FEATURE_SENSORS],
    schedules=[segment_retention_schedule, *FEATURE_SCHEDULES],
    resources={"storage": HarvestStorage()},
)

"""The one Dagster ``Definitions`` object: assets, checks, jobs, sensors and schedules wired to one resource."""

import dagster as dg

from assets.compaction import COMPACTION_ASSETS, COMPACTION_JOB
from assets.resources import HarvestStorage
from assets.retention import segment_retention
from sensors.retention import segment_retention_schedule
from sensors.segments import COMPACTION_SENSORS

defs = dg.Definitions(
    assets=[*COMPACTION_ASSETS],
    jobs=[COMPACTION_JOB, segment_retention],
    sensors=[*COMPACTION_SENSORS],
    schedules=[segment_retention_schedule],
    resources={"storage": HarvestStorage()},
)

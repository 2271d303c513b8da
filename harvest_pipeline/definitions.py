"""The one Dagster ``Definitions`` object: assets, checks, jobs, sensors and schedules wired to one resource.

The assets form one graph: ``sealed_segments`` (external) -> the raw kinds -> the ``*_daily`` kinds -> ``completeness``
(blocking check ``no_unexplained_holes``) -> ``features_1s``.
"""

import dagster as dg

from assets.book import BOOK_ASSETS
from assets.catalog import reading_catalog
from assets.compaction import COMPACTION_ASSETS, COMPACTION_JOB
from assets.completeness import COMPLETENESS_ASSETS
from assets.consolidation import CONSOLIDATION_ASSETS
from assets.features import FEATURE_ASSETS
from assets.publication import PUBLICATION_JOBS, PUBLICATION_SCHEDULES
from assets.resources import HarvestStorage
from assets.retention import RETENTION_JOBS
from assets.trade_backfill import TRADE_BACKFILL_ASSETS
from sensors.features import FEATURE_JOBS, FEATURE_SENSORS
from sensors.retention import RETENTION_SCHEDULES
from sensors.segments import COMPACTION_SENSORS
from sensors.symbols import SYMBOL_SENSORS

defs = dg.Definitions(
    assets=[
        *COMPACTION_ASSETS,
        *CONSOLIDATION_ASSETS,
        *COMPLETENESS_ASSETS,
        *BOOK_ASSETS,
        *FEATURE_ASSETS,
        *TRADE_BACKFILL_ASSETS,
        reading_catalog,
    ],
    jobs=[COMPACTION_JOB, *RETENTION_JOBS, *FEATURE_JOBS, *PUBLICATION_JOBS],
    sensors=[*COMPACTION_SENSORS, *SYMBOL_SENSORS, *FEATURE_SENSORS],
    schedules=[*RETENTION_SCHEDULES, *PUBLICATION_SCHEDULES],
    resources={"storage": HarvestStorage.from_deployment()},
)

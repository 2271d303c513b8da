"""``reading_catalog``: ``<data root>/catalog.duckdb``, the store's SQL views in a file any DuckDB client attaches.

``ATTACH 'data/catalog.duckdb' AS harvest (READ_ONLY)`` from the DuckDB CLI, Python or DBeaver gives ``harvest.prices``
(the default market's) and ``harvest.usdm.prices``, ``harvest.spot.prices`` ... (``harvest_pipeline.reading.views``).
Views read globs, so new days, symbols and parts are seen without a rebuild; only a kind or a market that had no
file when the catalog was written needs one: materialized when it never was, then every hour.
"""

import datetime as dt

import dagster as dg

from assets.metadata import OWNERS
from assets.resources import HarvestStorage
from harvest_pipeline.dagster_home import DUCKDB_POOL
from harvest_pipeline.reading.views import catalog_path, write_catalog
from harvest_pipeline.store.layout import sql_literal

CATALOG_LOGIC_VERSION = "1"
"""Bump when ``harvest_pipeline.reading.views`` defines different views from the same store."""
CATALOG_CRON = "0 * * * *"
_HANDLED = dg.AutomationCondition.newly_requested() | dg.AutomationCondition.newly_updated()
CATALOG_AUTOMATION = (
    dg.AutomationCondition.missing().newly_true() | dg.AutomationCondition.cron_tick_passed(CATALOG_CRON, "UTC")
).since(_HANDLED).with_label("when never materialized, then hourly") & ~dg.AutomationCondition.in_progress()
"""Requested once when the catalog was never written (the first evaluation after it is deployed, unlike
``since_last_handled``, which ignores what is already true then), and at each hour's tick (picking up a kind or
market new since); a failed run waits for the next tick."""
CATALOG_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=3), warn_window=dt.timedelta(hours=2))
"""Rewritten hourly: one missed tick warns, two fail (a new kind or market may then lack its view)."""


@dg.asset(
    group_name="reading",
    kinds={"duckdb"},
    owners=OWNERS,
    code_version=CATALOG_LOGIC_VERSION,
    automation_condition=CATALOG_AUTOMATION,
    freshness_policy=CATALOG_FRESHNESS,
    pool=DUCKDB_POOL,
)
def reading_catalog(context: dg.AssetExecutionContext, storage: HarvestStorage) -> dg.MaterializeResult:
    """A DuckDB file of views, one per kind with files and market (``usdm.prices``; the default market's also
    unqualified, ``prices``), each every row once; attach it read-only (``docs/reading.md``)."""
    settings = storage.settings()
    paths = settings.paths()
    views = write_catalog(paths, settings.market)
    path = catalog_path(paths)
    context.log.info(f"wrote {len(views)} views to {path}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "attach": dg.MetadataValue.md(f"```sql\nATTACH {sql_literal(path)} AS harvest (READ_ONLY);\n```"),
            "view_count": len(views),
            "views": dg.MetadataValue.json(views),
        }
    )

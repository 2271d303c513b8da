"""Daily consolidation assets: one ``<kind>_daily`` asset per raw kind, partitioned by UTC date x symbol."""

import datetime as dt
from collections.abc import Iterator

import dagster as dg

from assets.compaction import RAW_KIND_KEYS
from assets.metadata import COLUMN_SCHEMA, OWNERS, ROW_COUNT, code_version, table_schema
from assets.resources import HarvestStorage
from harvest_pipeline.dagster_home import DUCKDB_POOL
from harvest_pipeline.features.quality import MAX_DUPLICATE_RATE
from harvest_pipeline.markets import Market, split_partition_key
from harvest_pipeline.schema import RAW_KINDS
from harvest_pipeline.settings import load_settings
from harvest_pipeline.store import DEDUP_KEYS
from harvest_pipeline.store.consolidation import consolidate
from harvest_pipeline.symbol_partitions import SYMBOL_PARTITIONS_NAME

SYMBOL_PARTITIONS = dg.DynamicPartitionsDefinition(name=SYMBOL_PARTITIONS_NAME)
"""One partition per symbol recorded, kept in the instance: compaction adds a symbol once it writes market data for
it, the ``symbol_partitions`` sensor the symbols of the settings and of the Parquet on disk
(``harvest_pipeline.symbol_partitions``)."""
DAY_SYMBOL_PARTITIONS = dg.MultiPartitionsDefinition(
    {
        "date": dg.DailyPartitionsDefinition(start_date=load_settings().start_date, end_offset=1),
        "symbol": SYMBOL_PARTITIONS,
    }
)
"""UTC event date x symbol, keys ``2026-01-01|BTCUSDT`` (markets other than USDⓈ-M: ``2026-01-01|spot:BTCUSDT``);
``end_offset=1`` makes today a partition so its features can refresh during the day."""

CONSOLIDATED_KINDS = tuple(DEDUP_KEYS)
CHECKED_KINDS = ("prices", "bookticker", "orderbook")
"""Market-data kinds whose duplicate rates are checked (exchange ids; the ledger has none)."""
CONSOLIDATION_LOGIC_VERSION = 1
"""Bump when ``harvest_pipeline.store.consolidation`` changes what a day file holds."""
NIGHTLY_CRON = "20 0 * * *"
"""00:20 UTC: yesterday is consolidated once late segments of the day have been compacted."""
_NIGHTLY_TICK: dg.AutomationCondition = dg.AutomationCondition.cron_tick_passed(NIGHTLY_CRON, "UTC")
NIGHTLY_CONSOLIDATION = (
    dg.AutomationCondition.in_latest_time_window(dt.timedelta(days=2))
    & ~dg.AutomationCondition.in_latest_time_window()
    & _NIGHTLY_TICK.since_last_handled()
    & ~dg.AutomationCondition.in_progress()
).with_label("nightly: yesterday after 00:20 UTC")
"""Yesterday's partition of every symbol (the latest date partition is today), once per 00:20 UTC tick. It reads
no dependency: whether the raw kinds changed is data dependent (a segment may hold any day), so the condition never
walks the ``segments`` partitions behind ``AllPartitionMapping``."""
DAILY_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 1 * * *", lower_bound_delta=dt.timedelta(hours=1))
"""Consolidated between 00:00 and 01:00 UTC each day (the nightly run at 00:20), or later by late data."""


def daily_asset_key(kind: str) -> dg.AssetKey:
    """``prices`` -> ``prices_daily``: the consolidated day of a raw kind."""
    return dg.AssetKey(f"{kind}_daily")


def partition_day_symbol(context: dg.AssetExecutionContext) -> tuple[dt.date, Market, str]:
    """The (UTC date, market, symbol) of the partition being materialized (``spot:BTCUSDT`` is spot's BTCUSDT)."""
    keys = context.partition_key.keys_by_dimension
    market, symbol = split_partition_key(keys["symbol"])
    return dt.date.fromisoformat(keys["date"]), market, symbol


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            daily_asset_key(kind),
            group_name="daily",
            description=f"`{kind}` of one UTC day x symbol merged into one sorted file, deduplicated by "
            f"{', '.join(DEDUP_KEYS[kind])}; swapped in atomically so readers never see parts and day file together.",
            deps=[dg.AssetDep(RAW_KIND_KEYS[kind], partition_mapping=dg.AllPartitionMapping())],
            metadata={COLUMN_SCHEMA: table_schema(RAW_KINDS[kind])},
            kinds={"duckdb", "parquet"},
            owners=OWNERS,
            code_version=code_version(CONSOLIDATION_LOGIC_VERSION, RAW_KINDS[kind]),
            automation_condition=NIGHTLY_CONSOLIDATION,
            freshness_policy=DAILY_FRESHNESS,
        )
        for kind in CONSOLIDATED_KINDS
    ],
    check_specs=[
        spec
        for kind in CHECKED_KINDS
        for spec in (
            dg.AssetCheckSpec("duplicates_removed_below_limit", asset=daily_asset_key(kind)),
            dg.AssetCheckSpec("no_duplicates_after_dedup", asset=daily_asset_key(kind), blocking=True),
        )
    ],
    partitions_def=DAY_SYMBOL_PARTITIONS,
    can_subset=True,
    pool=DUCKDB_POOL,
)
def daily_consolidation(context: dg.AssetExecutionContext, storage: HarvestStorage) -> Iterator:
    """Consolidate each selected kind of the partition's day x symbol (a no-op for a kind already consolidated)."""
    day, market, symbol = partition_day_symbol(context)
    parquet_root = storage.parquet_root(market)
    for key in sorted(context.selected_asset_keys):
        kind = key.path[-1].removesuffix("_daily")
        result = consolidate(parquet_root, day, symbol, kind)
        context.log.info(f"{kind} {day} {symbol}: {result.rows_in} rows in, {result.rows_out} out")
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                ROW_COUNT: result.rows_out,
                "rows_in": result.rows_in,
                "rows_out": result.rows_out,
                "duplicates_removed": result.duplicates_removed,
                "duplicate_rate": result.duplicate_rate,
                "source_files": len(result.sources),
                "day_file": result.day_file or "(no data)",
            },
        )
        if kind in CHECKED_KINDS:
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name="duplicates_removed_below_limit",
                passed=result.duplicate_rate < MAX_DUPLICATE_RATE,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"duplicate_rate": result.duplicate_rate, "limit": MAX_DUPLICATE_RATE},
            )
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name="no_duplicates_after_dedup",
                passed=result.duplicates_after == 0,
                metadata={"duplicates_after": result.duplicates_after, "rows_out": result.rows_out},
            )


CONSOLIDATION_ASSETS = [daily_consolidation]

"""Daily consolidation assets: one ``<kind>_daily`` asset per raw kind, partitioned by UTC date x symbol."""

import datetime as dt
import os
from collections.abc import Iterator

import dagster as dg

from assets.resources import HarvestStorage
from harvest_pipeline.features.quality import MAX_DUPLICATE_RATE
from harvest_pipeline.store import DEDUP_KEYS
from harvest_pipeline.store.consolidation import consolidate
from harvest_pipeline.symbols import validate_symbol

SYMBOLS_ENV = "HARVEST_SYMBOLS"
START_DATE_ENV = "HARVEST_START_DATE"


def configured_symbols() -> list[str]:
    """The symbols the collector records (``HARVEST_SYMBOLS``, comma separated; default BTCUSDT).

    A symbol becomes a partition key and a ``symbol=`` folder, so each one must pass the one symbol rule
    (``harvest_pipeline.symbols``); anything else stops the definitions from loading, naming the symbol.
    """
    symbols = [s.strip().upper() for s in os.environ.get(SYMBOLS_ENV, "BTCUSDT").split(",") if s.strip()]
    try:
        return [validate_symbol(symbol) for symbol in symbols]
    except ValueError as exc:
        raise ValueError(f"{SYMBOLS_ENV}: {exc}") from None


DAY_SYMBOL_PARTITIONS = dg.MultiPartitionsDefinition(
    {
        "date": dg.DailyPartitionsDefinition(start_date=os.environ.get(START_DATE_ENV, "2026-01-01"), end_offset=1),
        "symbol": dg.StaticPartitionsDefinition(configured_symbols()),
    }
)
"""UTC event date x symbol; ``end_offset=1`` makes today a partition so its features can refresh during the day."""

CONSOLIDATED_KINDS = tuple(DEDUP_KEYS)
CHECKED_KINDS = ("prices", "bookticker", "orderbook")
"""Market-data kinds whose duplicate rates are checked (exchange ids; the ledger has none)."""


def daily_asset_key(kind: str) -> dg.AssetKey:
    """``prices`` -> ``prices_daily``: the consolidated day of a raw kind."""
    return dg.AssetKey(f"{kind}_daily")


def partition_day_symbol(context: dg.AssetExecutionContext) -> tuple[dt.date, str]:
    """The (UTC date, symbol) of the partition being materialized."""
    keys = context.partition_key.keys_by_dimension
    return dt.date.fromisoformat(keys["date"]), keys["symbol"]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            daily_asset_key(kind),
            group_name="daily",
            description=f"`{kind}` of one UTC day x symbol merged into one sorted file, deduplicated by "
            f"{', '.join(DEDUP_KEYS[kind])}; swapped in atomically so readers never see parts and day file together.",
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
)
def daily_consolidation(context: dg.AssetExecutionContext, storage: HarvestStorage) -> Iterator:
    """Consolidate each selected kind of the partition's day x symbol (a no-op for a kind already consolidated)."""
    day, symbol = partition_day_symbol(context)
    parquet_root = storage.paths().parquet
    for key in sorted(context.selected_asset_keys):
        kind = key.path[-1].removesuffix("_daily")
        result = consolidate(parquet_root, day, symbol, kind)
        context.log.info(f"{kind} {day} {symbol}: {result.rows_in} rows in, {result.rows_out} out")
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
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

"""``completeness``: the certificate of one UTC day x symbol, and the blocking check that no hole is unexplained."""

import dagster as dg

from assets.consolidation import DAILY_FRESHNESS, DAY_SYMBOL_PARTITIONS, daily_asset_key, partition_day_symbol
from assets.features import AFTER_CONSOLIDATION
from assets.metadata import COLUMN_SCHEMA, OWNERS, ROW_COUNT, code_version, table_schema
from assets.resources import HarvestStorage
from harvest_pipeline.completeness import build_certificate, write_certificate
from harvest_pipeline.dagster_home import DUCKDB_POOL
from harvest_pipeline.schema import COMPLETENESS

CERTIFIED_KINDS = ("prices", "orderbook", "depth_snapshot", "events")
"""The daily kinds a certificate reads."""
COMPLETENESS_LOGIC_VERSION = 1
"""Bump when ``harvest_pipeline.completeness`` judges the same rows differently."""
LISTED_UNEXPLAINED = 20
"""Unexplained holes shown in the check's metadata (the certificate file lists them all)."""


@dg.asset(
    partitions_def=DAY_SYMBOL_PARTITIONS,
    deps=[daily_asset_key(kind) for kind in CERTIFIED_KINDS],
    check_specs=[dg.AssetCheckSpec("no_unexplained_holes", asset="completeness", blocking=True)],
    group_name="quality",
    kinds={"duckdb", "parquet"},
    owners=OWNERS,
    code_version=code_version(COMPLETENESS_LOGIC_VERSION, COMPLETENESS),
    metadata={COLUMN_SCHEMA: table_schema(COMPLETENESS)},
    automation_condition=AFTER_CONSOLIDATION,
    freshness_policy=DAILY_FRESHNESS,
    pool=DUCKDB_POOL,
)
def completeness(context: dg.AssetExecutionContext, storage: HarvestStorage) -> dg.MaterializeResult:
    """Every hole of the day's aggTrade ids and depth ``pu`` chain, across segments and from the day before, with its
    cause: ``healed`` (filled from REST), ``declared`` (a collector or backfill record says why) or ``unexplained``.
    The blocking check fails on an unexplained hole, so ``features_1s`` of that day is not built in the same run and
    the UI shows the day as uncertified (docs/completeness.md)."""
    day, market, symbol = partition_day_symbol(context)
    parquet_root = storage.parquet_root(market)
    table = build_certificate(parquet_root, day, symbol)
    path = write_certificate(table, parquet_root, day, symbol)
    streams = table.to_pylist()
    metadata: dict[str, dg.MetadataValue] = {
        ROW_COUNT: dg.MetadataValue.int(table.num_rows),
        "path": dg.MetadataValue.path(str(path)),
    }
    for row in streams:
        metadata[row["stream"]] = dg.MetadataValue.json(stream_summary(row))
    unexplained = [
        {"stream": row["stream"], **hole} for row in streams for hole in row["holes"] if hole["cause"] == "unexplained"
    ]
    check = dg.AssetCheckResult(
        check_name="no_unexplained_holes",
        passed=all(row["certified"] for row in streams),
        metadata={
            "unexplained_holes": sum(row["unexplained_holes"] for row in streams),
            "declared_holes": sum(row["declared_holes"] for row in streams),
            "healed_holes": sum(row["healed_holes"] for row in streams),
            "first_unexplained": dg.MetadataValue.json(unexplained[:LISTED_UNEXPLAINED]),
        },
    )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def stream_summary(row: dict) -> dict:
    """The figures of one certificate row, without its hole list."""
    keys = ("first_id", "last_id", "rows", "rows_ws", "rows_rest", "ids_missing", "healed_holes", "declared_holes")
    summary = {key: row[key] for key in (*keys, "unexplained_holes", "certified")}
    if row["book_chain_share"] is not None:
        summary["book_chain_share"] = round(row["book_chain_share"], 6)
    return summary


COMPLETENESS_ASSETS = [completeness]

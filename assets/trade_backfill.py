"""``trade_backfill``: the aggTrade holes of one UTC day x symbol filled from REST, launched by hand.

Materialize one partition, or a range of them as a Dagster backfill from the UI. Each run writes one segment of
collector ``backfill`` (``harvest_pipeline.backfill.days``); the ``sealed_segments`` sensor compacts it like any
other, after which the day's certificate shows the holes healed or declared. Runs take turns on one lock per data
root, so a range never spends more REST weight than one run's ``weight_per_minute``.
"""

import time

import dagster as dg

from assets.consolidation import DAY_SYMBOL_PARTITIONS, partition_day_symbol
from assets.metadata import OWNERS
from assets.resources import HarvestStorage
from harvest_pipeline.backfill.days import DEFAULT_WEIGHT_PER_MINUTE, HealProgress, heal_days

TRADE_BACKFILL_LOGIC_VERSION = "1"
"""Bump when ``harvest_pipeline.backfill`` fetches or records differently."""
LOG_EVERY_S = 30.0
MAX_DECLARED_SHOWN = 20


class TradeBackfillConfig(dg.Config):
    """How hard a run may use REST, and whether it retries what an earlier backfill declared unfillable."""

    weight_per_minute: int = DEFAULT_WEIGHT_PER_MINUTE
    retry_declared: bool = False


@dg.asset(
    partitions_def=DAY_SYMBOL_PARTITIONS,
    group_name="backfill",
    owners=OWNERS,
    kinds={"jsonl"},
    code_version=TRADE_BACKFILL_LOGIC_VERSION,
    description="The aggTrade holes of one UTC day x symbol filled from REST `/fapi/v1/aggTrades` (the market's "
    "aggTrades path off USDⓈ-M; its REST base unless it is the installation's market) into one new "
    "segment (what the exchange no longer serves is declared with the reason). Launched by hand; compaction of the "
    "segment then heals the day's prices and certificate.",
)
def trade_backfill(
    context: dg.AssetExecutionContext, config: TradeBackfillConfig, storage: HarvestStorage
) -> dg.MaterializeResult:
    """Heal the partition's day x symbol and report what was fetched and declared."""
    day, market, symbol = partition_day_symbol(context)
    settings = storage.settings()
    last_logged = [0.0]

    def log_progress(progress: HealProgress) -> None:
        if time.monotonic() - last_logged[0] >= LOG_EVERY_S:
            last_logged[0] = time.monotonic()
            context.log.info(
                f"{symbol} {day}: holes {progress.holes_done}/{progress.holes}, ids {progress.ids_done}/"
                f"{progress.ids}, {progress.requests} requests, {progress.trades_stored} trades stored"
            )

    rest_base = settings.rest_base if market.name == settings.market else market.rest_base
    report = heal_days(
        settings.paths(),
        symbol,
        day,
        day,
        rest_base,
        config.weight_per_minute,
        progress=log_progress,
        retry_declared=config.retry_declared,
        market=market,
    )
    declared = [
        {"first_id": d.first_id, "last_id": d.last_id, "ids": d.ids, "reason": d.reason}
        for d in report.declared[:MAX_DECLARED_SHOWN]
    ]
    return dg.MaterializeResult(
        metadata={
            "holes_considered": report.holes_considered,
            "holes_unlisted": report.holes_unlisted,
            "trades_stored": report.trades_stored,
            "ids_declared": report.ids_declared,
            "declared": dg.MetadataValue.json({"ranges": len(report.declared), "first": declared}),
            "requests": report.requests,
            "weight_used": report.weight_used,
            "segment": dg.MetadataValue.text(report.segment or "none: nothing to fill"),
        }
    )


TRADE_BACKFILL_ASSETS = [trade_backfill]

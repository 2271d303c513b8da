"""The whole path for a short window, all real: simulator -> collector segments -> compaction -> daily consolidation ->
features_1s on a temporary Dagster instance, checked against the plain reference and the simulator's own accounting."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter, defaultdict
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from assets.consolidation import daily_consolidation
from assets.features import features_1s
from assets.resources import HarvestStorage
from harvest_pipeline.compaction import compact_segment, reconcile
from harvest_pipeline.features.sources import day_start_ms
from harvest_pipeline.features.table import features_path
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.schema import ALL_SYMBOLS
from harvest_pipeline.segments import list_sealed_segments
from harvest_pipeline.store import kind_dir
from harvest_pipeline.symbol_partitions import register_symbols
from tests.collector.harness import collect_in_process
from tests.features.reference import reference_features
from tests.features.test_dagster_assets import assert_matches_reference

SYMBOL = "BTCUSDT"
TRADES = f"{SYMBOL.lower()}@aggTrade"
TICKER = f"{SYMBOL.lower()}@bookTicker"
WINDOW_S = 12.0
REPEATED = {TRADES: 6, TICKER: 6}
"""Frames the simulator sends twice: the copies must vanish in dedup, not show up as trades or book updates."""
BLOCKING_CHECKS = {
    ("features_1s", "row_count_is_86400"),
    ("prices_daily", "no_duplicates_after_dedup"),
    ("bookticker_daily", "no_duplicates_after_dedup"),
    ("orderbook_daily", "no_duplicates_after_dedup"),
}


async def brisk_market_with_repeats(sim, service) -> None:
    """WINDOW_S of a busy simulated market, with repeated frames injected half way."""
    await asyncio.sleep(WINDOW_S / 2)
    for stream, count in REPEATED.items():
        await sim.apply_fault({"fault": "repeat", "stream": stream, "count": count})
    await asyncio.sleep(WINDOW_S / 2)


def distinct_ids_per_second(
    records: list[dict], stream: str, id_key: str, time_key: str
) -> dict[dt.date, Counter[int]]:
    """From the raw frames the collector sealed: per UTC date, distinct exchange ids per second of ``time_key``."""
    seen: dict[int, int] = {}
    for record in records:
        if record["k"] == "frame" and record["s"] == stream:
            data = record["f"]["data"]
            seen.setdefault(data[id_key], data[time_key])
    per_day: dict[dt.date, Counter[int]] = defaultdict(Counter)
    for event_ms in seen.values():
        day = dt.datetime.fromtimestamp(event_ms / 1000, dt.UTC).date()
        per_day[day][(event_ms - day_start_ms(day)) // 1000] += 1
    return per_day


def nonzero_seconds(table: pa.Table, column: str) -> Counter[int]:
    """Second of day -> value, for the seconds where an integer column of features_1s is not 0."""
    values = table.column(column).to_pylist()
    return Counter({second: n for second, n in enumerate(values) if n})


def event_dirs(parquet: Path, day: dt.date) -> list[Path]:
    """The ledgers features read for a day: the symbol's and the connection-wide one, on the day and its neighbours."""
    days = (day - dt.timedelta(days=1), day, day + dt.timedelta(days=1))
    return [kind_dir(parquet, d, owner, "events") for d in days for owner in (SYMBOL, ALL_SYMBOLS)]


def materialize_day(
    selection: list, instance: dg.DagsterInstance, day: dt.date, paths: DataPaths
) -> dg.ExecuteInProcessResult:
    """Materialize ``selection`` for (day, SYMBOL) in process, with storage at the test's data root."""
    return dg.materialize(
        selection,
        partition_key=dg.MultiPartitionKey({"date": day.isoformat(), "symbol": SYMBOL}),
        instance=instance,
        resources={"storage": HarvestStorage(data_root=str(paths.root))},
    )


def test_simulated_window_through_the_pipeline_matches_reference_and_simulator_and_reruns_identically(tmp_path):
    records, accounting = collect_in_process(
        tmp_path, brisk_market_with_repeats, symbols=(SYMBOL,), segment_max_age_s=2.0
    )
    paths = DataPaths.from_root(tmp_path / "data")
    reports = [compact_segment(segment, paths) for segment in list_sealed_segments(paths.sealed_segments)]
    assert len(reports) >= 3 and all(reconcile(report).passed for report in reports)
    streams = accounting["streams"]
    assert {stream: streams[stream]["repeated"] for stream in REPEATED} == REPEATED

    trades_sent = distinct_ids_per_second(records, TRADES, "a", "T")  # trades count in the second of trade time
    ticks_sent = distinct_ids_per_second(records, TICKER, "u", "E")
    assert sum(sum(c.values()) for c in trades_sent.values()) == streams[TRADES]["frames"] > 10 * WINDOW_S
    assert sum(sum(c.values()) for c in ticks_sent.values()) == streams[TICKER]["frames"] > 0
    dates = sorted(p.parent.parent.name for p in paths.market_parquet().glob(f"date=*/symbol={SYMBOL}/kind=prices"))
    assert dates == [f"date={day}" for day in sorted(trades_sent)], "one date partition per UTC date of the data"

    trades_seen = 0
    with dg.instance_for_test() as instance:
        register_symbols(instance, [SYMBOL])  # compacted without Dagster here: the asset would have registered it
        for day in sorted(trades_sent):
            reference = reference_features(
                kind_dir(paths.market_parquet(), day, SYMBOL, "prices").parent,
                event_dirs(paths.market_parquet(), day),
                day_start_ms(day),
            )
            intraday = materialize_day([features_1s], instance, day, paths)
            assert intraday.success
            from_parts = pq.read_table(features_path(paths.market_parquet(), day, SYMBOL))
            assert from_parts.num_rows == 86_400
            assert_matches_reference(from_parts, reference)
            assert nonzero_seconds(from_parts, "trade_count") == trades_sent[day]
            assert nonzero_seconds(from_parts, "book_updates") == ticks_sent[day]
            assert not any(from_parts.column("is_empty").to_pylist()[s] for s in trades_sent[day])
            trades_seen += sum(from_parts.column("trade_count").to_pylist())

            for _ in range(2):
                final = materialize_day([daily_consolidation, features_1s], instance, day, paths)
                assert final.success
                assert len(list(kind_dir(paths.market_parquet(), day, SYMBOL, "prices").glob("*.parquet"))) == 1
                assert pq.read_table(features_path(paths.market_parquet(), day, SYMBOL)).equals(from_parts)
                checks = {(e.asset_key.to_user_string(), e.check_name): e for e in final.get_asset_check_evaluations()}
                assert {key: checks[key].passed for key in BLOCKING_CHECKS} == dict.fromkeys(BLOCKING_CHECKS, True)
    assert trades_seen == streams[TRADES]["frames"]

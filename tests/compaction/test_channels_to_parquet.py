"""The channels beyond trades and book, end to end: the real collector records trade, markPrice@1s, forceOrder and
kline_1m frames and polls open interest from the real simulator (repeated and malformed frames injected on them);
compaction of the sealed segments reconciles per stream with what the simulator says it sent: rows + duplicates +
quarantined = frames sent, and one open interest row per answer the simulator gave."""

import asyncio
from collections import Counter
from pathlib import Path

import duckdb

from harvest_pipeline.compaction import compact_segment, reconcile
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import list_sealed_segments
from tests.collector.harness import collect_in_process

SYMBOLS = ("BTCUSDT", "ETHUSDT")
STREAM_KINDS = ("aggTrade", "trade", "markPrice@1s", "forceOrder", "kline_1m")
KIND_OF_STREAM = {
    "aggTrade": "prices",
    "trade": "trades",
    "markPrice@1s": "mark_price",
    "forceOrder": "liquidations",
    "kline_1m": "klines",
}
ID_COLUMN = {
    "prices": "agg_trade_id",
    "trades": "trade_id",
    "mark_price": "event_time_ms",
    "liquidations": "event_time_ms",
    "klines": "open_time_ms",
}
MALFORMED = {"btcusdt@trade": 3, "ethusdt@markPrice@1s": 1, "btcusdt@kline_1m": 2}
REPEATED = {"ethusdt@trade": 4, "btcusdt@markPrice@1s": 2, "ethusdt@kline_1m": 3}


async def faulty_feed(sim, service) -> None:
    await asyncio.sleep(1.5)
    for stream, count in MALFORMED.items():
        await sim.apply_fault({"fault": "malformed", "stream": stream, "count": count})
    for stream, count in REPEATED.items():
        await sim.apply_fault({"fault": "repeat", "stream": stream, "count": count})
    await asyncio.sleep(3.0)


def rows_of(parquet_root: Path, kind: str) -> list[tuple]:
    """(stream, id, segment, is_closed or NULL, trade_count or NULL) of every row of ``kind`` (one stream per symbol
    and kind)."""
    closed = "is_closed, trade_count" if kind == "klines" else "NULL, NULL"
    stream_kind = next(stream for stream, of in KIND_OF_STREAM.items() if of == kind)
    return duckdb.sql(
        f"SELECT lower(symbol) || '@{stream_kind}', {ID_COLUMN[kind]}, segment, {closed} FROM read_parquet("
        f"'{parquet_root}/date=*/symbol=*/kind={kind}/*.parquet', hive_partitioning = true, union_by_name = true)"
        " ORDER BY ALL"
    ).fetchall()


def test_every_channel_reconciles_per_stream_with_what_the_simulator_sent(tmp_path):
    records, accounting = collect_in_process(
        tmp_path,
        faulty_feed,
        symbols=SYMBOLS,
        segment_max_age_s=1.0,
        stream_kinds=STREAM_KINDS,
        watchdog_s=10.0,
        open_interest_interval_s=0.5,
        simulator_settings={"liquidation_share": 0.5},
    )
    paths = DataPaths.from_root(tmp_path / "data")
    sealed = list_sealed_segments(paths.sealed_segments)
    assert len(sealed) >= 3

    reports = [compact_segment(segment, paths) for segment in sealed]

    assert all(reconcile(report).passed for report in reports), [reconcile(r).detail for r in reports]
    streams = accounting["streams"]
    duplicates: Counter[str] = Counter()
    for report in reports:
        duplicates.update(report.duplicates)
    quarantined = sum(report.quarantined for report in reports)
    assert quarantined == sum(s["malformed"] for s in streams.values()) == sum(MALFORMED.values())
    assert {s: streams[s]["repeated"] for s in REPEATED} == REPEATED
    for stream_kind, kind in KIND_OF_STREAM.items():
        rows = rows_of(paths.market_parquet(), kind)
        kind_streams = {s for s in streams if s.split("@", 1)[1] == stream_kind}
        assert {row[0] for row in rows} == kind_streams, kind
        sent = sum(streams[s]["frames"] + streams[s]["repeated"] for s in kind_streams)
        assert sent > 0, kind
        assert len(rows) + duplicates[kind] == sent, f"{kind}: rows + duplicates != frames sent"
        for stream in kind_streams:
            ids = sorted({row[1] for row in rows if row[0] == stream})
            if kind == "klines":  # one row per minute the stream sent, each minute kept once per segment
                continue
            assert len(ids) == streams[stream]["frames"], stream
            assert (ids[0], ids[-1]) == (streams[stream]["first_id"], streams[stream]["last_id"]), stream
            if kind == "trades":
                assert ids == list(range(ids[0], ids[-1] + 1)), f"{stream}: trade ids have holes"
    klines = rows_of(paths.market_parquet(), "klines")
    for stream in {row[0] for row in klines}:
        minutes = Counter(row[1] for row in klines if row[0] == stream)
        closed = {row[1] for row in klines if row[0] == stream and row[3]}
        assert len(minutes) >= 1 and all(m in closed for m in sorted(minutes)[:-1]), f"{stream}: a minute never closed"
    answered = accounting["rest"]["answered"]["openInterest"]
    interest = duckdb.sql(
        f"SELECT symbol, count(*) FROM read_parquet('{paths.market_parquet()}/date=*/symbol=*/kind=open_interest/"
        "*.parquet',"
        " hive_partitioning = true) GROUP BY symbol"
    ).fetchall()
    assert dict(interest) == answered and all(count >= 3 for count in answered.values())
    assert sum(r["k"] == "open_interest" for r in records) == sum(answered.values())

"""Segments of each market compact into that market's Parquet root, read with that market's message layouts.

Spot sends depth diffs without ``pu`` and ``T``, book tickers without any time and snapshots without ``E``/``T``;
COIN-M adds ``ps`` and names contracts ``BTCUSD_PERP``. The same symbol on two markets never shares a file.
"""

from __future__ import annotations

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest

from harvest_pipeline import segments
from harvest_pipeline.compaction import SegmentUnreadable, compact_segment, fast, reconcile
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.store import kind_dir, read_parquet_sql, visible_files
from tests.compaction.frames import (
    MS,
    SegmentBuilder,
    TrafficMix,
    agg_trade,
    as_coinm,
    as_spot,
    book_ticker,
    depth_update,
    snapshot_body,
)

START_MS = 1_767_225_600_000
DAY = "2026-01-01"


def spot_depth_update(symbol: str, first_id: int, final_id: int, event_ms: int) -> bytes:
    """A spot diff: no ``T``, no ``pu`` (it continues the chain when ``U`` = previous ``u`` + 1)."""
    data = {
        "e": "depthUpdate",
        "E": event_ms,
        "s": symbol,
        "U": first_id,
        "u": final_id,
        "b": [["97000.10", "0.50000"]],
        "a": [["97000.20", "0"]],
    }
    return orjson.dumps({"stream": f"{symbol.lower()}@depth@100ms", "data": data})


def spot_book_ticker(symbol: str, update_id: int) -> bytes:
    """A spot bookTicker: no ``e``, ``E`` or ``T``."""
    data = {"u": update_id, "s": symbol, "b": "97000.10", "B": "1.25000", "a": "97000.20", "A": "0.00400"}
    return orjson.dumps({"stream": f"{symbol.lower()}@bookTicker", "data": data})


def spot_agg_trade(symbol: str, agg_id: int, event_ms: int) -> bytes:
    """A spot aggTrade: the futures fields plus ``M``."""
    frame = orjson.loads(agg_trade(symbol, agg_id, event_ms))
    frame["data"]["M"] = True
    return orjson.dumps(frame)


def coinm_depth_update(first_id: int, final_id: int, prev_id: int, event_ms: int) -> bytes:
    frame = orjson.loads(depth_update("BTCUSD_PERP", first_id, final_id, prev_id, event_ms))
    frame["data"] = {**frame["data"], "ps": "BTCUSD"}
    return orjson.dumps(frame)


def rows(root, kind: str, symbol: str, columns: str) -> list[tuple]:
    files = visible_files(kind_dir(root, DAY, symbol, kind))
    return duckdb.sql(f"SELECT {columns} FROM {read_parquet_sql(files)} ORDER BY line").fetchall() if files else []


def spot_segment(tmp_path) -> segments.SealedSegment:
    streams = ["btcusdt@aggTrade", "btcusdt@depth@100ms", "btcusdt@bookTicker"]
    builder = SegmentBuilder(tmp_path, opened_at_ns=START_MS * MS, collector_id="c1.spot", market="spot")
    builder.control("connect", START_MS, url="ws://127.0.0.1/stream", streams=streams)
    builder.snapshot("BTCUSDT", orjson.dumps({"lastUpdateId": 100, "bids": [["97000.10", "1"]], "asks": []}), START_MS)
    builder.frame("btcusdt@aggTrade", spot_agg_trade("BTCUSDT", 7, START_MS + 10), START_MS + 12)
    builder.frame("btcusdt@depth@100ms", spot_depth_update("BTCUSDT", 101, 105, START_MS + 20), START_MS + 23)
    builder.frame("btcusdt@depth@100ms", spot_depth_update("BTCUSDT", 106, 110, START_MS + 120), START_MS + 124)
    builder.frame("btcusdt@depth@100ms", spot_depth_update("BTCUSDT", 0, 0, START_MS + 130), START_MS + 131)
    builder.frame("btcusdt@bookTicker", spot_book_ticker("BTCUSDT", 111), START_MS + 125)
    builder.frame("btcusdt@bookTicker", spot_book_ticker("BTCUSDT", 111), START_MS + 126)  # a duplicate
    builder.frame(
        "btcusdt@bookTicker", b'{"stream":"btcusdt@bookTicker","data":{"s":"BTCUSDT","b":"1"}}', START_MS + 127
    )
    return builder.seal()


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_spot_segment_reads_with_spots_layouts_into_the_spot_root_the_same_on_both_roads(
    tmp_path, monkeypatch, fast_path
):
    monkeypatch.setattr(fast, "ENABLED", fast_path)
    paths = DataPaths.from_root(tmp_path)
    report = compact_segment(spot_segment(tmp_path), paths)

    assert reconcile(report).passed, reconcile(report).detail
    spot = paths.market_parquet("spot")
    assert not paths.market_parquet("usdm").exists(), "spot rows went to the USDⓈ-M root"
    assert report.partition_keys() == {"spot:BTCUSDT"}
    # a diff names no predecessor: U - 1 stands for pu, its transaction time is its event time
    diffs = rows(spot, "orderbook", "BTCUSDT", "first_update_id, final_update_id, prev_final_update_id, "
                 "event_time_ms, transaction_time_ms")  # fmt: skip
    assert diffs == [(101, 105, 100, START_MS + 20, START_MS + 20), (106, 110, 105, START_MS + 120, START_MS + 120)]
    # a book ticker and a snapshot carry no time: the receive time is theirs
    tickers = rows(spot, "bookticker", "BTCUSDT", "update_id, event_time_ms, transaction_time_ms, latency_ms")
    assert tickers == [(111, START_MS + 125, START_MS + 125, 0)]
    assert rows(spot, "depth_snapshot", "BTCUSDT", "last_update_id, event_time_ms") == [(100, START_MS)]
    assert rows(spot, "prices", "BTCUSDT", "agg_trade_id") == [(7,)]
    assert report.duplicates["bookticker"] == 1
    quarantined = [orjson.loads(line) for line in report.quarantine_file.read_bytes().splitlines()]
    reasons = sorted(record["reason"] for record in quarantined)
    assert reasons == [
        "bookticker: missing u; missing B; missing a; missing A",
        "orderbook: U: 0 has no previous update id",
    ]
    assert not report.unexplained_gaps(), "the spot chain U = previous u + 1 is continuous"


def test_a_spot_chain_break_is_a_depth_gap(tmp_path):
    builder = SegmentBuilder(tmp_path, opened_at_ns=START_MS * MS, collector_id="c1.spot", market="spot")
    builder.control("connect", START_MS, url="ws://127.0.0.1/stream", streams=["btcusdt@depth@100ms"])
    builder.frame("btcusdt@depth@100ms", spot_depth_update("BTCUSDT", 101, 105, START_MS + 20), START_MS + 23)
    builder.frame("btcusdt@depth@100ms", spot_depth_update("BTCUSDT", 108, 110, START_MS + 120), START_MS + 124)
    report = compact_segment(builder.seal(), DataPaths.from_root(tmp_path))

    [gap] = report.unexplained_gaps()
    assert (gap.symbol, gap.last_id, gap.next_id) == ("BTCUSDT", 105, 107)


def coinm_builder(tmp_path) -> SegmentBuilder:
    streams = ["btcusd_perp@aggTrade", "btcusd_perp@depth@100ms", "btcusd_perp@bookTicker"]
    builder = SegmentBuilder(tmp_path, opened_at_ns=START_MS * MS, collector_id="c1.coinm", market="coinm")
    builder.control("connect", START_MS, url="ws://127.0.0.1/stream", streams=streams)
    for n in range(20):
        event_ms = START_MS + 1_000 + 100 * n
        builder.frame("btcusd_perp@aggTrade", agg_trade("BTCUSD_PERP", 50 + n, event_ms, qty="12"), event_ms + 3)
        depth = coinm_depth_update(1_000 + 10 * n, 1_009 + 10 * n, 999 + 10 * n, event_ms)
        builder.frame("btcusd_perp@depth@100ms", depth, event_ms + 4)
        ticker = orjson.loads(book_ticker("BTCUSD_PERP", 5_000 + n, event_ms))
        ticker["data"]["ps"] = "BTCUSD"
        builder.frame("btcusd_perp@bookTicker", orjson.dumps(ticker), event_ms + 5)
    builder.snapshot("BTCUSD_PERP", snapshot_body(1_005, START_MS + 50), START_MS + 60)
    return builder


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_coinm_segment_lands_in_the_coinm_root_the_same_on_both_roads(tmp_path, monkeypatch, fast_path):
    monkeypatch.setattr(fast, "ENABLED", fast_path)
    paths = DataPaths.from_root(tmp_path)
    report = compact_segment(coinm_builder(tmp_path).seal(), paths)

    assert reconcile(report).passed, reconcile(report).detail
    assert report.quarantined == 0 and not report.unexplained_gaps()
    assert report.partition_keys() == {"coinm:BTCUSD_PERP"}
    coinm = paths.market_parquet("coinm")
    assert [row[0] for row in rows(coinm, "prices", "BTCUSD_PERP", "agg_trade_id")] == list(range(50, 70))
    assert len(rows(coinm, "orderbook", "BTCUSD_PERP", "final_update_id")) == 20
    assert len(rows(coinm, "bookticker", "BTCUSD_PERP", "update_id")) == 20
    assert rows(coinm, "prices", "BTCUSD_PERP", "DISTINCT CAST(qty AS VARCHAR)") == [("12.00000000",)]


def test_the_same_symbol_on_two_markets_never_shares_a_file(tmp_path):
    paths = DataPaths.from_root(tmp_path)
    spot = SegmentBuilder(tmp_path, opened_at_ns=START_MS * MS, collector_id="c1.spot", market="spot")
    spot.control("connect", START_MS, url="ws://x/stream", streams=["btcusdt@aggTrade"])
    spot.frame("btcusdt@aggTrade", spot_agg_trade("BTCUSDT", 7, START_MS + 10), START_MS + 12)
    usdm = SegmentBuilder(tmp_path, opened_at_ns=START_MS * MS, collector_id="c1")
    usdm.control("connect", START_MS, url="ws://x/market/stream", streams=["btcusdt@aggTrade"])
    usdm.frame("btcusdt@aggTrade", agg_trade("BTCUSDT", 7, START_MS + 10, price="97200.00"), START_MS + 11)

    reports = [compact_segment(builder.seal(), paths) for builder in (spot, usdm)]

    assert [report.partition_keys() for report in reports] == [{"spot:BTCUSDT"}, {"BTCUSDT"}]
    prices = {
        name: rows(paths.market_parquet(name), "prices", "BTCUSDT", "CAST(price AS VARCHAR)")
        for name in ("spot", "usdm")
    }
    assert prices == {"spot": [("97123.40000000",)], "usdm": [("97200.00000000",)]}


def test_a_sidecar_naming_an_unknown_market_is_a_permanent_failure(tmp_path):
    sealed = SegmentBuilder(tmp_path).control("connect", START_MS, url="ws://x").seal()
    meta = orjson.loads(sealed.meta_path.read_bytes())
    sealed.meta_path.write_bytes(orjson.dumps({**meta, "market": "options"}))

    with pytest.raises(SegmentUnreadable, match="unknown market 'options'"):
        compact_segment(sealed, DataPaths.from_root(tmp_path))
    assert not (tmp_path / "parquet").exists()


@pytest.mark.parametrize(("market", "convert"), [("spot", as_spot), ("coinm", as_coinm)])
def test_mixed_traffic_of_each_market_writes_the_same_rows_on_both_roads(tmp_path, monkeypatch, market, convert):
    """Thousands of frames of every kind, with mutated copies: the fast path (scanner and DuckDB) and the generic path
    read each market's layouts to the same rows and the same quarantine."""
    frames = [
        (*convert(stream, raw), event_ms) for stream, raw, event_ms in TrafficMix(start_ms=START_MS).frames(6_000)
    ]
    builder = SegmentBuilder(tmp_path, opened_at_ns=START_MS * MS, collector_id=f"c1.{market}", market=market)
    builder.control("connect", START_MS, url="ws://x/stream", streams=sorted({stream for stream, _, _ in frames}))
    for n, (stream, raw, event_ms) in enumerate(frames):
        builder.frame(stream, raw, event_ms + 4)
        if n % 500 == 7:  # a poison value and a repeat now and then
            builder.frame(stream, raw.replace(b'"u":', b'"u":-', 1).replace(b'"a":', b'"a":1e', 1), event_ms + 5)
            builder.frame(stream, raw, event_ms + 6)
    sealed = builder.seal()

    def tables(fast_path: bool, out: str) -> dict[str, list[dict]]:
        monkeypatch.setattr(fast, "ENABLED", fast_path)
        report = compact_segment(sealed, DataPaths.from_root(tmp_path / out))
        assert reconcile(report).passed, reconcile(report).detail
        quarantine = report.quarantine_file.read_bytes() if report.quarantine_file else b""
        rows = {f"{f.kind}/{f.symbol}": pq.read_table(f.path).to_pylist() for f in report.files}
        return {**rows, "quarantine": [quarantine], "duplicates": [report.duplicates]}

    on_fast, on_generic = tables(True, "fast"), tables(False, "generic")
    assert on_fast == on_generic
    assert on_fast["quarantine"] != [b""] and sum(on_fast["duplicates"][0].values()) > 0
    assert {key.split("/")[0] for key in on_fast} >= {"prices", "orderbook", "bookticker", "events"}

"""Compaction of real segments (written through harvest_pipeline.segments), without Dagster."""

from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import pyarrow.parquet as pq

from harvest_pipeline.compaction import compact_segment, quarantine_path, reconcile
from harvest_pipeline.compaction.kinds import KINDS
from harvest_pipeline.paths import DataPaths
from tests.compaction.frames import MS, SegmentBuilder, TrafficMix, agg_trade, book_ticker, depth_update, snapshot_body

MIDNIGHT_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def read_kind(root: Path, kind: str) -> list[dict]:
    """Every row of a kind, with the hive partition columns, via DuckDB."""
    pattern = f"{root}/parquet/market=usdm/date=*/symbol=*/kind={kind}/*.parquet"
    con = duckdb.connect()
    relation = con.sql(f"SELECT * FROM read_parquet('{pattern}', hive_partitioning = true) ORDER BY segment, line")
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def test_mixed_traffic_is_compacted_exactly_with_duplicates_and_malformed_lines_accounted(tmp_path):
    mix = TrafficMix(start_ms=MIDNIGHT_MS + 3_600_000)
    builder = SegmentBuilder(tmp_path).control("connect", MIDNIGHT_MS + 3_600_000, url="ws://x")
    generated = []
    for stream, raw, event_ms in mix.frames(3000):
        builder.frame(stream, raw, event_ms + 4)
        generated.append((stream, orjson.loads(raw)["data"]))
    repeated = generated[100:150]
    for stream, data in repeated:
        builder.frame(stream, orjson.dumps({"stream": stream, "data": data}), data["E"] + 9, conn_id="c2")
    builder.snapshot("BTCUSDT", snapshot_body(4_999, MIDNIGHT_MS + 3_600_001), MIDNIGHT_MS + 3_600_010)
    builder.raw_line(
        b'{"t":1767229200000000000,"c":"c1","n":9001,"k":"frame","s":"btcusdt@aggTrade","f":{"str', MIDNIGHT_MS
    )
    too_precise = agg_trade("BTCUSDT", 1, MIDNIGHT_MS + 3_600_002, price="1.123456789")
    builder.frame("btcusdt@aggTrade", too_precise, MIDNIGHT_MS + 3_600_003)
    builder.frame("btcusdt@ticker", b'{"stream":"btcusdt@ticker","data":{"e":"24hrTicker"}}', MIDNIGHT_MS)
    builder.frame("btcusdt@aggTrade", b"not json at all {", MIDNIGHT_MS + 3_600_004)
    builder.control("gap", MIDNIGHT_MS + 3_600_005, "btcusdt@aggTrade", reason="test", expected=1, got=2, missing=1)
    sealed = builder.seal()
    paths = DataPaths.from_root(tmp_path)

    report = compact_segment(sealed, paths)

    for kind, event in (("prices", "aggTrade"), ("orderbook", "depthUpdate"), ("bookticker", "bookTicker")):
        expected = [d for _, d in generated if d["e"] == event]
        rows = read_kind(tmp_path, kind)
        assert len(rows) == len(expected), kind
        id_column = {"prices": "agg_trade_id", "orderbook": "final_update_id", "bookticker": "update_id"}[kind]
        id_key = {"prices": "a", "orderbook": "u", "bookticker": "u"}[kind]
        got = sorted((r["symbol"], r[id_column], r["event_time_ms"], r["conn_id"]) for r in rows)
        assert got == sorted((d["s"], d[id_key], d["E"], "c1") for d in expected), kind
    repeated_kinds = {"aggTrade": "prices", "depthUpdate": "orderbook", "bookTicker": "bookticker"}
    expected_duplicates = {spec.kind: 0 for spec in KINDS}
    for _, data in repeated:
        expected_duplicates[repeated_kinds[data["e"]]] += 1
    assert report.duplicates == expected_duplicates
    prices = read_kind(tmp_path, "prices")
    assert prices[0]["price"] == Decimal("97123.40") and prices[0]["qty"] == Decimal("0.012")
    assert {r["latency_ms"] for r in prices} == {4}
    book = read_kind(tmp_path, "orderbook")
    assert book[0]["asks"][-1]["qty"] == Decimal("0")
    snapshot = read_kind(tmp_path, "depth_snapshot")
    assert [s["last_update_id"] for s in snapshot] == [4_999] and snapshot[0]["bids"][0]["price"] == Decimal("97000")

    assert report.quarantined == 4
    entries = [orjson.loads(line) for line in quarantine_path(paths.quarantine, sealed.name).read_bytes().splitlines()]
    reasons = {entry["line"]: entry["reason"] for entry in entries}
    assert len(reasons) == 4 and all(entry["segment"] == sealed.name for entry in entries)
    assert any("not valid JSON" in r for r in reasons.values())
    assert "prices: p is not an exact DECIMAL(18, 8)" in reasons.values()
    assert "frame record with unsupported event type '24hrTicker'" in reasons.values()
    assert any("collector bad_frame" in r for r in reasons.values())
    events = read_kind(tmp_path, "events")
    assert sorted(e["line"] for e in events if e["event"] == "quarantine") == sorted(reasons)
    assert {e["event"] for e in events} == {"connect", "gap", "quarantine"}
    gap_event = next(e for e in events if e["event"] == "gap")
    assert (gap_event["from_id"], gap_event["to_id"], gap_event["count"], gap_event["symbol"]) == (1, 2, 1, "BTCUSDT")

    reconciliation = reconcile(report)
    assert reconciliation.passed, reconciliation.detail
    assert reconciliation.detail["lines_read"] == 3000 + 50 + 1 + 4 + 2


def test_segment_spanning_midnight_writes_both_utc_dates(tmp_path):
    builder = SegmentBuilder(tmp_path, opened_at_ns=(MIDNIGHT_MS - 2000) * MS)
    for offset, agg_id in ((-1500, 10), (-1, 11), (0, 12), (700, 13)):
        builder.frame(
            "ethusdt@aggTrade", agg_trade("ETHUSDT", agg_id, MIDNIGHT_MS + offset + 1), MIDNIGHT_MS + offset + 3
        )
    report = compact_segment(builder.seal(), DataPaths.from_root(tmp_path))

    by_date = {(f.date, f.kind): f.rows for f in report.files}
    assert by_date == {("2025-12-31", "prices"): 2, ("2026-01-01", "prices"): 2}
    rows = read_kind(tmp_path, "prices")
    assert {r["agg_trade_id"]: str(r["date"]) for r in rows} == {
        10: "2025-12-31",
        11: "2025-12-31",
        12: "2026-01-01",
        13: "2026-01-01",
    }
    assert reconcile(report).passed


def test_running_a_segment_twice_replaces_its_files_with_identical_data(tmp_path):
    builder = SegmentBuilder(tmp_path)
    for stream, raw, event_ms in TrafficMix(start_ms=MIDNIGHT_MS + 1000).frames(500):
        builder.frame(stream, raw, event_ms + 2)
    sealed = builder.seal()
    paths = DataPaths.from_root(tmp_path)
    first = compact_segment(sealed, paths)
    before = {f.path: pq.read_table(f.path) for f in first.files}
    second = compact_segment(sealed, paths)

    assert sorted(f.path for f in second.files) == sorted(before)
    assert all(pq.read_table(path).equals(table) for path, table in before.items())
    assert sorted(paths.market_parquet().rglob("*.parquet")) == sorted(before)
    assert not list(paths.market_parquet().rglob(".*.tmp"))


def test_rows_are_sorted_by_event_time_with_zstd_row_groups(tmp_path):
    builder = SegmentBuilder(tmp_path)
    for agg_id, event_ms in ((3, MIDNIGHT_MS + 30), (1, MIDNIGHT_MS + 10), (2, MIDNIGHT_MS + 20)):
        builder.frame("btcusdt@aggTrade", agg_trade("BTCUSDT", agg_id, event_ms), MIDNIGHT_MS + 40)
    report = compact_segment(builder.seal(), DataPaths.from_root(tmp_path))
    [written] = report.files
    table = pq.read_table(written.path)
    assert table.column("agg_trade_id").to_pylist() == [1, 2, 3]
    assert pq.ParquetFile(written.path).metadata.row_group(0).column(0).compression == "ZSTD"
    assert written.path.name == f"part-{report.segment}.parquet"


def test_continuity_lists_unexplained_jumps_and_pu_breaks_only(tmp_path):
    builder = SegmentBuilder(tmp_path)
    for agg_id in (1, 2, 5, 6, 9):
        builder.frame("btcusdt@aggTrade", agg_trade("BTCUSDT", agg_id, MIDNIGHT_MS + agg_id), MIDNIGHT_MS + agg_id + 1)
    builder.control("gap", MIDNIGHT_MS + 7, "btcusdt@aggTrade", reason="aggTrade id jump", expected=3, got=5, missing=2)
    for first, final, prev in ((10, 12, 9), (13, 15, 12), (20, 22, 18)):
        builder.frame(
            "btcusdt@depth@100ms", depth_update("BTCUSDT", first, final, prev, MIDNIGHT_MS + final), MIDNIGHT_MS
        )
    builder.frame("btcusdt@bookTicker", book_ticker("BTCUSDT", 1, MIDNIGHT_MS), MIDNIGHT_MS)
    report = compact_segment(builder.seal(), DataPaths.from_root(tmp_path))

    gaps = {(g.check_name, g.last_id, g.next_id): g.explained_by_line for g in report.gaps}
    assert gaps == {("agg_trade_id", 2, 5): 6, ("agg_trade_id", 6, 9): None, ("pu", 15, 18): None}
    [unexplained_jump, _] = sorted(report.unexplained_gaps(), key=lambda g: g.check_name)
    assert (unexplained_jump.last_time_ms, unexplained_jump.next_time_ms) == (MIDNIGHT_MS + 5, MIDNIGHT_MS + 8)


def test_depth_levels_that_cannot_be_stored_exactly_are_quarantined_not_rounded(tmp_path):
    good = depth_update("BTCUSDT", 10, 12, 9, MIDNIGHT_MS + 1000)
    hostile = {
        "nine decimals without a leading digit": (b'["97000.00","0.001"]', b'[".123456789","0.001"]'),
        "exponent notation": (b'["97000.00","0.001"]', b'["97000.00","1e-3"]'),
    }
    builder = SegmentBuilder(tmp_path).frame("btcusdt@depth@100ms", good, MIDNIGHT_MS + 1004)
    for offset, (original, replacement) in enumerate(hostile.values(), start=1):
        frame = depth_update("BTCUSDT", 12 + offset, 12 + offset, 12 + offset - 1, MIDNIGHT_MS + 1000 + offset)
        assert original in frame
        builder.frame("btcusdt@depth@100ms", frame.replace(original, replacement, 1), MIDNIGHT_MS + 1004 + offset)
    sealed = builder.seal()

    report = compact_segment(sealed, DataPaths.from_root(tmp_path))

    assert [row["final_update_id"] for row in read_kind(tmp_path, "orderbook")] == [12]
    assert report.quarantined == len(hostile)
    assert reconcile(report).passed

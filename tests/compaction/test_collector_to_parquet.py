"""The real collector records the real simulator (with repeated and malformed frames injected); compaction of its
sealed segments holds exactly the frames the simulator says it sent, no more, no fewer."""

import asyncio
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb

from assets.compaction import RAW_KIND_KEYS, RECONCILIATION_CHECK, SEGMENT_PARTITIONS, raw_market_data
from assets.resources import HarvestStorage
from harvest_pipeline.compaction import compact_segment, reconcile
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import list_sealed_segments
from sensors.segments import batch_requests
from tests.collector.harness import collect_in_process

SYMBOLS = ("BTCUSDT", "ETHUSDT")
KIND_OF_STREAM = {"aggTrade": "prices", "depth@100ms": "orderbook", "bookTicker": "bookticker"}
STREAM_OF_KIND = {kind: stream_kind for stream_kind, kind in KIND_OF_STREAM.items()}
ID_COLUMN = {"prices": "agg_trade_id", "orderbook": "final_update_id", "bookticker": "update_id"}
MALFORMED = {"btcusdt@aggTrade": 3, "ethusdt@bookTicker": 2}
REPEATED = {"ethusdt@depth@100ms": 4, "btcusdt@bookTicker": 5, "ethusdt@aggTrade": 3}


async def faulty_feed(sim, service) -> None:
    await asyncio.sleep(1.0)
    for stream, count in MALFORMED.items():
        await sim.apply_fault({"fault": "malformed", "stream": stream, "count": count})
    for stream, count in REPEATED.items():
        await sim.apply_fault({"fault": "repeat", "stream": stream, "count": count})
    await asyncio.sleep(1.5)


def rows_by_stream(parquet_root: Path, kind: str) -> dict[str, list[tuple]]:
    """(id, pu or None, segment) of each row of ``kind`` per stream (one stream per symbol and kind), in order."""
    prev = "prev_final_update_id" if kind == "orderbook" else "NULL"
    relation = duckdb.sql(
        f"SELECT symbol, {ID_COLUMN[kind]}, {prev}, segment FROM read_parquet("
        f"'{parquet_root}/date=*/symbol=*/kind={kind}/*.parquet', hive_partitioning = true) ORDER BY ALL"
    )
    rows: dict[str, list[tuple]] = {}
    for symbol, row_id, pu, segment in relation.fetchall():
        rows.setdefault(f"{symbol.lower()}@{STREAM_OF_KIND[kind]}", []).append((row_id, pu, segment))
    return rows


def test_compacted_collector_segments_hold_exactly_the_simulators_frames(tmp_path):
    records, accounting = collect_in_process(tmp_path, faulty_feed, symbols=SYMBOLS, segment_max_age_s=0.5)
    paths = DataPaths.from_root(tmp_path / "data")
    sealed = list_sealed_segments(paths.sealed_segments)
    assert len(sealed) >= 3, "short segment intervals should have produced several segments"

    reports = [compact_segment(segment, paths) for segment in sealed]

    assert all(reconcile(report).passed for report in reports), [reconcile(r).detail for r in reports]
    streams = accounting["streams"]
    duplicates = Counter()
    for report in reports:
        duplicates.update(report.duplicates)
    for kind in KIND_OF_STREAM.values():
        rows = rows_by_stream(paths.market_parquet(), kind)
        assert set(rows) == {s for s in streams if KIND_OF_STREAM[s.split("@", 1)[1]] == kind}, kind
        for stream, stream_rows in rows.items():
            in_segment = Counter((row_id, segment) for row_id, _, segment in stream_rows)
            assert max(in_segment.values()) == 1, f"{stream}: a duplicate survived inside one segment"
        # A repeated pair split by a segment seal lands in two segments; dedup is per segment, so one copy stays twice.
        across_segments = sum(len(r) - len({row_id for row_id, _, _ in r}) for r in rows.values())
        assert duplicates[kind] + across_segments == sum(streams[s]["repeated"] for s in rows), kind
        for stream, stream_rows in rows.items():
            sent = streams[stream]
            ids = sorted({row_id for row_id, _, _ in stream_rows})
            assert len(ids) == sent["frames"] > 0, stream
            assert (ids[0], ids[-1]) == (sent["first_id"], sent["last_id"]), stream
            if kind == "prices":
                assert ids == list(range(sent["first_id"], sent["last_id"] + 1)), f"{stream}: agg ids have holes"
            if kind == "orderbook":
                chain = sorted({(row_id, pu) for row_id, pu, _ in stream_rows})
                breaks = [(a, b) for a, b in zip(chain, chain[1:], strict=False) if b[1] != a[0]]
                assert not breaks, f"{stream}: pu chain breaks {breaks[:3]}"
    assert {s: streams[s]["repeated"] for s in REPEATED} == REPEATED
    assert {s: streams[s]["malformed"] for s in MALFORMED} == MALFORMED
    assert sum(report.quarantined for report in reports) == sum(s["malformed"] for s in streams.values())
    snapshots = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{paths.market_parquet()}/*/*/kind=depth_snapshot/*.parquet')"
    )
    assert snapshots.fetchall()[0][0] == sum(r["k"] == "snapshot" for r in records) >= len(SYMBOLS)

    names = [segment.name for segment in sealed]
    storage = HarvestStorage(data_root=str(paths.root))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(SEGMENT_PARTITIONS.name, names)
        [request] = batch_requests(names)
        outcome = dg.materialize(
            [raw_market_data], instance=instance, resources={"storage": storage}, tags=request.tags
        )
        assert outcome.success
        checks = {e.check_name: e.passed for e in outcome.get_asset_check_evaluations()}
        assert checks[RECONCILIATION_CHECK.name]
        assert instance.get_materialized_partitions(RAW_KIND_KEYS["prices"]) == set(names)
    for kind in KIND_OF_STREAM.values():
        after_rerun = rows_by_stream(paths.market_parquet(), kind)
        assert sum(map(len, after_rerun.values())) == sum(report.rows_written(kind) for report in reports), kind

"""Spot and COIN-M end to end: the real collector records each market from the real simulator of that market
(repeated and malformed frames injected), compaction reconciles per stream with what the simulator sent, the days
certify, and ``features_1s`` reads them; two markets recorded into one data root (USDⓈ-M and spot ``BTCUSDT``)
compact through a real Dagster instance into their own roots and symbol partitions."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from assets.compaction import SEGMENT_PARTITIONS
from assets.consolidation import daily_consolidation
from assets.features import features_1s
from assets.resources import HarvestStorage
from harvest_pipeline.compaction import compact_segment, reconcile
from harvest_pipeline.features.table import FeatureParams, build_features, features_path
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import list_sealed_segments
from harvest_pipeline.symbol_partitions import registered_symbols
from tests.collector.harness import collect_in_process
from tests.e2e.healing import certify_days
from tests.e2e.readme import sql_statements
from tests.ops.compacted import compact

MARKETS_DOC = Path(__file__).resolve().parents[2] / "docs" / "markets.md"

KIND_OF_STREAM = {
    "aggTrade": ("prices", "agg_trade_id"),
    "depth@100ms": ("orderbook", "final_update_id"),
    "bookTicker": ("bookticker", "update_id"),
    "markPrice@1s": ("mark_price", "event_time_ms"),
    "forceOrder": ("liquidations", "event_time_ms"),
    "kline_1m": ("klines", "open_time_ms"),
}
MARKET_SYMBOLS = {"spot": ("BTCUSDT", "ETHUSDT"), "coinm": ("BTCUSD_PERP", "ETHUSD_PERP")}


def faulty_feed(symbols: tuple[str, ...]):
    first, second = (symbol.lower() for symbol in symbols)
    repeated = {f"{first}@bookTicker": 3, f"{second}@depth@100ms": 2, f"{first}@aggTrade": 2}
    malformed = {f"{second}@aggTrade": 2, f"{first}@depth@100ms": 1}

    async def feed(sim, service) -> None:
        await asyncio.sleep(1.5)
        for stream, count in repeated.items():
            await sim.apply_fault({"fault": "repeat", "stream": stream, "count": count})
        for stream, count in malformed.items():
            await sim.apply_fault({"fault": "malformed", "stream": stream, "count": count})
        await asyncio.sleep(3.5)

    return feed, repeated, malformed


def stream_rows(parquet_root: Path, kind: str, stream_kind: str, id_column: str) -> list[tuple[str, int]]:
    files = sorted(parquet_root.glob(f"date=*/symbol=*/kind={kind}/*.parquet"))
    if not files:
        return []
    listed = ", ".join(f"'{path}'" for path in files)
    return duckdb.sql(
        f"SELECT lower(symbol) || '@{stream_kind}', {id_column} "
        f"FROM read_parquet([{listed}], hive_partitioning = true, union_by_name = true)"
    ).fetchall()


@pytest.mark.parametrize("market", ["spot", "coinm"])
def test_each_market_reconciles_per_stream_certifies_and_feeds_the_features(tmp_path, market):
    symbols = MARKET_SYMBOLS[market]
    feed, repeated, malformed = faulty_feed(symbols)
    _, accounting = collect_in_process(
        tmp_path,
        feed,
        symbols=symbols,
        segment_max_age_s=1.0,
        stream_kinds=("default",),
        open_interest_interval_s=0.5,
        watchdog_s=10.0,
        simulator_settings={"market": market, "liquidation_share": 0.5},
        market=market,
    )
    paths = DataPaths.from_root(tmp_path / "data")
    reports = [compact_segment(segment, paths) for segment in list_sealed_segments(paths.sealed_segments)]
    assert {report.market.name for report in reports} == {market}
    assert all(reconcile(report).passed for report in reports), [reconcile(r).detail for r in reports]
    assert not paths.market_parquet("usdm").exists(), "nothing of this market went to the USDⓈ-M root"

    streams = accounting["streams"]
    assert {s: streams[s]["repeated"] for s in repeated} == repeated
    assert sum(report.quarantined for report in reports) == sum(malformed.values())
    duplicates: Counter[str] = Counter()
    for report in reports:
        duplicates.update(report.duplicates)
    root = paths.market_parquet(market)
    served = {stream.split("@", 1)[1] for stream in streams}
    for stream_kind, (kind, id_column) in KIND_OF_STREAM.items():
        rows = stream_rows(root, kind, stream_kind, id_column)
        if stream_kind not in served:
            assert market == "spot" and stream_kind in ("markPrice@1s", "forceOrder") and not rows
            continue
        kind_streams = {s for s in streams if s.split("@", 1)[1] == stream_kind}
        sent = sum(streams[s]["frames"] + streams[s]["repeated"] for s in kind_streams)
        if kind == "klines":  # one row per minute and segment: the rest are duplicates by design
            assert rows and len(rows) + duplicates[kind] == sent
            continue
        assert len(rows) + duplicates[kind] == sent > 0, f"{kind}: rows + duplicates != frames sent"
        for stream in kind_streams:
            ids = sorted(row[1] for row in rows if row[0] == stream)
            assert len(ids) == len(set(ids)) == streams[stream]["frames"], stream
            if "first_id" in streams[stream] and kind != "bookticker":
                assert (ids[0], ids[-1]) == (streams[stream]["first_id"], streams[stream]["last_id"]), stream
    interest = list(root.glob("date=*/symbol=*/kind=open_interest/*.parquet"))
    assert bool(interest) == (market == "coinm"), "open interest exists on COIN-M only"

    day = dt.datetime.now(dt.UTC).date()
    for symbol in symbols:
        certificates = certify_days(root, symbol)
        rows = [row for rows in certificates.values() for row in rows]
        assert rows and all(row["certified"] for row in rows), rows
        if day in certificates:
            features = build_features(root, day, symbol, FeatureParams()).table
            trades = duckdb.sql(
                f"SELECT count(*) FROM read_parquet('{root}/date={day}/symbol={symbol}/kind=prices/*.parquet')"
            ).fetchall()[0][0]
            assert sum(features.column("trade_count").to_pylist()) == trades > 0
            assert any(v is not None for v in features.column("best_bid").to_pylist()), "L1 from the book ticker"
            has_marks = any(v is not None for v in features.column("mark_price").to_pylist())
            assert has_marks == (market == "coinm")


def test_usdm_and_spot_in_one_data_root_compact_into_their_own_roots_and_partitions(tmp_path, monkeypatch):
    for market in ("usdm", "spot"):
        collect_in_process(
            tmp_path,
            lambda sim, service: asyncio.sleep(3.0),
            symbols=("BTCUSDT",),
            segment_max_age_s=1.0,
            simulator_settings={"market": market},
            market=market,
        )
    paths = DataPaths.from_root(tmp_path / "data")
    sealed = list_sealed_segments(paths.sealed_segments)
    assert {segment.load_meta().market for segment in sealed} == {"usdm", "spot"}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(SEGMENT_PARTITIONS.name, [segment.name for segment in sealed])
        for segment in sealed:
            assert compact(tmp_path / "data", instance, name=segment.name)
        assert sorted(registered_symbols(instance)) == ["BTCUSDT", "spot:BTCUSDT"]

        day = dt.datetime.now(dt.UTC).date()
        for key in ("BTCUSDT", "spot:BTCUSDT"):
            built = dg.materialize(
                [daily_consolidation, features_1s],
                partition_key=dg.MultiPartitionKey({"date": day.isoformat(), "symbol": key}),
                instance=instance,
                resources={"storage": HarvestStorage(data_root=str(tmp_path / "data"))},
                selection=["prices_daily", "features_1s"],
            )
            assert built.success, key

    prices = {}
    for market in ("usdm", "spot"):
        root = paths.market_parquet(market)
        day_files = list(root.glob(f"date={day}/symbol=BTCUSDT/kind=prices/day-*.parquet"))
        assert len(day_files) == 1, market
        prices[market] = pq.read_table(day_files[0]).column("price").to_pylist()
        features = pq.read_table(features_path(root, day, "BTCUSDT"))
        assert sum(features.column("trade_count").to_pylist()) == len(prices[market])
    spot, usdm = (sorted(set(prices[m])) for m in ("spot", "usdm"))
    assert spot and usdm and spot != usdm, "each root holds its own market's trades"

    monkeypatch.chdir(tmp_path)  # the recipes of docs/markets.md read data/parquet
    side_by_side, every_market = (
        duckdb.sql(statement.replace("2026-11-30", day.isoformat())).fetchall()
        for statement in sql_statements(MARKETS_DOC.read_text())
    )
    assert {row[0]: row[1] for row in side_by_side} == {"spot": len(prices["spot"]), "usdm": len(prices["usdm"])}
    assert sorted(every_market) == [("spot", "BTCUSDT", len(prices["spot"])), ("usdm", "BTCUSDT", len(prices["usdm"]))]

"""One collector records any one of the three Binance markets: the defaults that differ follow ``--market``, COIN-M
and spot streams ride unrouted ``/stream`` connections, each market's REST paths and field names are used, spot's
depth chain (no ``pu``) is followed by ``U``, and every sealed sidecar says which market it holds."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from harvest_pipeline.collector import command
from harvest_pipeline.collector.buffer import BoundedLineQueue, DropLedger
from harvest_pipeline.collector.config import (
    DEFAULT_ROUTES,
    DEFAULT_STREAM_KINDS,
    MARKET_FOLLOWING_FIELDS,
    UNROUTED,
    CollectorConfig,
    config_with_overrides,
)
from harvest_pipeline.collector.metrics import CollectorMetrics
from harvest_pipeline.collector.service import CollectorService
from harvest_pipeline.collector.snapshots import snapshot_weight
from harvest_pipeline.collector.writer import SegmentWriter
from harvest_pipeline.markets import COINM, SPOT, USDM, Market
from harvest_pipeline.segments import LOCAL_FS, OpenSegment, SegmentNamer, encode_frame, list_sealed_segments
from harvest_pipeline.segments.records import KIND_OPEN_INTEREST
from harvest_pipeline.settings import load_settings
from harvest_pipeline.symbols import Selected, SymbolSelection
from tests.collector.harness import collect_in_process, records_of, sealed_markets, sent_per_stream
from tests.collector.sealed import frames_per_stream
from tests.simulator.ws_clients import http_get

RUN_S = 10.0
MARKET_SETTINGS: dict[str, Any] = {
    "stream_kinds": ("default",),
    "collector_id": "",  # the market's: c1.coinm, c1.spot
    "watchdog_s": 3.0,  # markPrice@1s and kline_1m would trip the harness's 1 s watchdog now and then
    "open_interest_interval_s": 1.0,
    "open_interest_weight_share": 0.5,
}


def test_the_defaults_that_differ_per_market_follow_the_market_unless_given() -> None:
    usdm, coinm, spot = (CollectorConfig(market=name) for name in ("usdm", "coinm", "spot"))
    assert (usdm.collector_id, coinm.collector_id, spot.collector_id) == ("c1", "c1.coinm", "c1.spot")
    assert (usdm.rest_weight_per_minute, coinm.rest_weight_per_minute, spot.rest_weight_per_minute) == (
        1200,
        1200,
        3000,
    )
    assert (
        usdm.stream_kinds == DEFAULT_STREAM_KINDS == coinm.stream_kinds
        and spot.stream_kinds == SPOT.default_stream_kinds
    )
    assert (usdm.snapshot_limit, coinm.snapshot_limit, spot.snapshot_limit) == (1000, 1000, 5000)
    assert (usdm.symbols, coinm.symbols, spot.symbols) == (("BTCUSDT",), ("BTCUSD_PERP",), ("BTCUSDT",))
    assert (coinm.ws_base, coinm.rest_base, spot.ws_base) == (COINM.ws_base, COINM.rest_base, SPOT.ws_base)
    for name in MARKET_FOLLOWING_FIELDS:
        assert getattr(coinm, name) != getattr(usdm, name) or getattr(spot, name) != getattr(usdm, name), name

    given = CollectorConfig(
        market="spot",
        collector_id="s9",
        stream_kinds=("default", "trade"),
        snapshot_limit=100,
        rest_weight_per_minute=50,
    )
    assert (given.collector_id, given.snapshot_limit, given.rest_weight_per_minute) == ("s9", 100, 50)
    assert given.stream_kinds == (*SPOT.default_stream_kinds, "trade"), "default stands for the market's kinds"


def test_a_kind_the_market_does_not_serve_is_refused_at_start_and_usdm_keeps_its_extra_routed_kinds() -> None:
    for kind in ("markPrice@1s", "forceOrder"):
        with pytest.raises(ValueError, match=f"stream kind '{kind}' is not served on spot; its kinds: aggTrade"):
            CollectorConfig(market="spot", stream_kinds=("aggTrade", kind))
    routed = CollectorConfig(stream_kinds=("kline_5m",), routes={**DEFAULT_ROUTES, "kline_5m": "market"})
    assert routed.streams_by_route() == {"market": ["btcusdt@kline_5m"]}
    assert CollectorConfig(market="spot", stream_kinds=("kline_5m",)).streams_by_route() == {
        UNROUTED: ["btcusdt@kline_5m"]
    }
    with pytest.raises(ValueError, match="unknown market 'options'"):
        CollectorConfig(market="options")


def test_unrouted_markets_carry_every_stream_of_a_symbol_on_one_stream_endpoint_and_usdm_stays_routed() -> None:
    coinm = CollectorConfig(market="coinm", symbols=("BTCUSD_PERP", "ETHUSD_PERP"), ws_base="ws://127.0.0.1:1/")
    names = [f"{symbol}@{kind}" for symbol in ("btcusd_perp", "ethusd_perp") for kind in COINM.default_stream_kinds]
    assert coinm.streams_by_route() == {UNROUTED: names}
    assert coinm.stream_url(UNROUTED) == "ws://127.0.0.1:1/stream"
    assert coinm.rest_url("depth") == f"{COINM.rest_base}/dapi/v1/depth"
    usdm = CollectorConfig(ws_base="ws://127.0.0.1:1")
    assert set(usdm.streams_by_route()) == {"market", "public"}
    assert usdm.stream_url("public") == "ws://127.0.0.1:1/public/stream"


def test_harvest_collect_market_reaches_the_collector_through_the_installation_settings() -> None:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["collect", "--market", "spot"])
    settings = load_settings({name: getattr(args, name) for name in command.INSTALLATION_FLAGS}, environ={})
    config = CollectorConfig.from_settings(settings, {})
    assert (config.market, config.collector_id, config.ws_base, config.rest_base) == (
        "spot",
        "c1.spot",
        SPOT.ws_base,
        SPOT.rest_base,
    )
    from_env = CollectorConfig.from_env({"HARVEST_MARKET": "coinm", "HARVEST_STREAM_KINDS": "default,trade"})
    assert from_env.collector_id == "c1.coinm" and from_env.stream_kinds == (*COINM.default_stream_kinds, "trade")
    with pytest.raises(ValueError, match="cannot move a usdm collector config to market 'spot'"):
        config_with_overrides(CollectorConfig(), {"market": "spot"})


def test_a_snapshot_is_charged_the_markets_weight_at_its_depth_and_the_usdm_table_is_unchanged() -> None:
    assert [snapshot_weight(USDM, limit) for limit in (5, 100, 500, 1000)] == [2, 5, 10, 20]
    assert snapshot_weight(COINM, 1000) == 20 and snapshot_weight(SPOT, 5000) == 250
    assert snapshot_weight(SPOT, 100) >= 5, "spot charges 5 for 100 levels: never under-counted"


def test_coin_m_selection_reads_contract_status_and_base_volume_and_never_picks_a_delivery_contract() -> None:
    info = {
        "symbols": [
            {"symbol": "BTCUSD_PERP", "contractStatus": "TRADING"},
            {"symbol": "ETHUSD_PERP", "contractStatus": "TRADING"},
            {"symbol": "BTCUSD_250328", "contractStatus": "TRADING"},
            {"symbol": "ADAUSD_PERP", "contractStatus": "SETTLING"},
        ]
    }
    tickers = [
        {"symbol": "BTCUSD_PERP", "baseVolume": "100.5"},
        {"symbol": "ETHUSD_PERP", "baseVolume": "900"},
        {"symbol": "BTCUSD_250328", "baseVolume": "99999"},
        {"symbol": "ADAUSD_PERP", "baseVolume": "50000"},
    ]
    top = SymbolSelection((), top=1)
    assert top.select(info, tickers, COINM.listing_status_key, COINM.volume_key) == Selected(
        ("ETHUSD_PERP",), ("BTCUSD_250328",)
    )
    assert SymbolSelection((), all=True).select(info).symbols == (), "read with USDⓈ-M's status key nothing trades"


def test_a_spot_writer_seals_and_recovers_segments_whose_sidecars_say_spot(tmp_path: Path) -> None:
    config = CollectorConfig(market="spot", segment_max_age_s=0.3, fsync_interval_s=0.05)
    open_dir, sealed = tmp_path / "open" / config.collector_id, tmp_path / "sealed"
    open_dir.mkdir(parents=True)
    frame = b'{"stream":"btcusdt@aggTrade","data":{"a":1}}'
    opened_ns = time.time_ns()
    left_open = OpenSegment(open_dir, SegmentNamer(config.collector_id).next_name(opened_ns), "c1.spot", opened_ns)
    left_open.append([encode_frame(time.time_ns(), "x-1", 1, "btcusdt@aggTrade", frame)])  # a crash: never sealed
    queue, ledger = BoundedLineQueue(100, 1 << 20), DropLedger()
    namer = SegmentNamer(config.collector_id)
    writer = SegmentWriter(config, queue, ledger, namer, open_dir, sealed, LOCAL_FS, time.time_ns, CollectorMetrics())
    writer.start()
    assert queue.offer(encode_frame(time.time_ns(), "x-2", 1, "btcusdt@aggTrade", frame))
    assert writer.stop(5.0)
    metas = [segment.load_meta() for segment in list_sealed_segments(sealed)]
    assert sorted(meta.recovered for meta in metas) == [False, True]
    assert {meta.market for meta in metas} == {"spot"} and {meta.collector_id for meta in metas} == {"c1.spot"}


# --- against a simulator of the market ------------------------------------------------------------------------------


def fits(snapshot: dict[str, Any], diffs: list[dict[str, Any]], exchange: Market) -> bool:
    """Whether a recorded diff can be the first applied on top of ``snapshot`` by the market's rule: spot's
    ``U <= L + 1 <= u``, the futures' ``U <= L <= u``."""
    last = snapshot["f"]["lastUpdateId"] + (1 if exchange.depth_chain == "first_id" else 0)
    return any(d["f"]["data"]["U"] <= last <= d["f"]["data"]["u"] for d in diffs)


def check_recorded_as_sent(
    records: list[dict[str, Any]], accounting: dict[str, Any], tmp_path: Path, exchange: Market
) -> None:
    """What every market's run must show: sent = sealed per stream, the market in every sidecar and in the segment
    names (its default collector id), every connection on the unrouted ``/stream`` with all its symbols' kinds."""
    assert dict(frames_per_stream(records)) == sent_per_stream(accounting), "sent = sealed, per stream"
    assert not records_of(records, "bad_frame") and not records_of(records, "watchdog")
    markets = sealed_markets(tmp_path)
    assert markets and set(markets.values()) == {exchange.name}
    assert all(f"-c1.{exchange.name}-" in name for name in markets)
    assert (tmp_path / "data" / "segments" / "open" / f"c1.{exchange.name}" / ".lock").exists()
    connects = records_of(records, "connect")
    assert len(connects) == 1, "one connection: every kind of every symbol on /stream, no reconnect"
    assert connects[0]["route"] == UNROUTED and urlsplit(connects[0]["url"]).path == "/stream"
    symbols = {name.partition("@")[0] for name in accounting["streams"]}
    wanted = {f"{symbol}@{kind}" for symbol in symbols for kind in exchange.default_stream_kinds}
    assert set(connects[0]["streams"]) == wanted


def check_books_synced_from_the_market_snapshots(
    records: list[dict[str, Any]], accounting: dict[str, Any], health: dict[str, Any], exchange: Market
) -> None:
    """Each snapshot came from the market's REST ``depth`` and fits the diffs recorded since its stream's last break
    (the diff it starts from may arrive before it); the books are synced at the end."""
    snapshots = records_of(records, "snapshot")
    stored = Counter(r["symbol"] for r in snapshots)
    assert stored == Counter(accounting["rest"]["answered"]["depth"]), "one record per answered depth request"
    for snapshot in snapshots:
        stream = f"{snapshot['symbol'].lower()}@depth@100ms"
        breaks = [gap["t"] for gap in records_of(records, "gap", stream) if gap["t"] < snapshot["t"]]
        since_break = [d for d in records_of(records, "frame", stream) if d["t"] >= max(breaks, default=0)]
        assert fits(snapshot, since_break, exchange), f"{snapshot['symbol']} snapshot fits the diffs since the break"
    assert set(health["books_synced"].values()) == {True} and health["market"] == exchange.name


REST_METRICS = {
    "harvest_depth_snapshots": "depth",
    "harvest_backfill_requests": "aggTrades",
    "harvest_open_interest_polls": "openInterest",
    "harvest_symbol_refreshes": "exchangeInfo",
}
"""The collector's counter of each of its REST callers, by the endpoint it asks."""


def rest_requests_made(service: CollectorService) -> dict[str, Counter[str]]:
    """The collector's own count of the REST requests it made, by endpoint and outcome (``ok``: HTTP 200): a request
    to a path the market does not serve would be a 404 here, whether or not the simulator counts it."""
    made: dict[str, Counter[str]] = {}
    for metric in service.metrics.registry.collect():
        for sample in metric.samples if metric.name in REST_METRICS else ():
            if sample.name.endswith("_total") and sample.value:
                outcome = sample.labels.get("result") or sample.labels["outcome"]
                made.setdefault(REST_METRICS[metric.name], Counter())[outcome] += int(sample.value)
    return made


def run_market(tmp_path: Path, exchange: Market, symbols: tuple[str, ...], faults: list[tuple[float, dict]]):
    """Record ``symbols`` from a simulator of ``exchange`` for ``RUN_S`` with the market's default kinds, applying
    each fault after its delay; returns the sealed records, the simulator's accounting and what was seen live."""
    seen: dict[str, Any] = {}

    async def scenario(sim, service) -> None:
        started = asyncio.get_running_loop().time()
        for at_s, fault in faults:
            await asyncio.sleep(max(0.0, started + at_s - asyncio.get_running_loop().time()))
            await sim.apply_fault(fault)
        await asyncio.sleep(max(0.0, started + RUN_S - asyncio.get_running_loop().time()))
        seen["health"] = service.health()[1]
        seen["service"] = service

    records, accounting = collect_in_process(
        tmp_path,
        scenario,
        symbols=symbols,
        simulator_settings={"market": exchange.name},
        market=exchange.name,
        **MARKET_SETTINGS,
    )
    return records, accounting, seen


def test_coin_m_is_recorded_on_stream_with_its_snapshots_and_open_interest_from_dapi(tmp_path: Path) -> None:
    symbols = ("BTCUSD_PERP", "ETHUSD_PERP")
    records, accounting, seen = run_market(tmp_path, COINM, symbols, [])

    check_recorded_as_sent(records, accounting, tmp_path, COINM)
    check_books_synced_from_the_market_snapshots(records, accounting, seen["health"], COINM)
    assert not records_of(records, "gap"), "a clean run breaks no chain"
    assert sorted((r["symbol"], r["reason"]) for r in records_of(records, "snapshot")) == [
        ("BTCUSD_PERP", "start"),
        ("ETHUSD_PERP", "start"),
    ]
    diffs = records_of(records, "frame", "btcusd_perp@depth@100ms")
    assert diffs and {r["f"]["data"]["ps"] for r in diffs} == {"BTCUSD"}, "COIN-M diffs name their pair"

    polled = Counter(r["symbol"] for r in records_of(records, KIND_OPEN_INTEREST))
    assert polled == Counter(accounting["rest"]["answered"]["openInterest"]), "one record per answered poll"
    assert set(polled) == set(symbols) and min(polled.values()) >= 5, "every second for 10 s"
    assert all(r["f"]["symbol"] == r["symbol"] for r in records_of(records, KIND_OPEN_INTEREST))


def test_spot_follows_its_depth_chain_by_first_id_and_asks_nothing_only_futures_serve(tmp_path: Path) -> None:
    symbols = ("BTCUSDT", "ETHUSDT")
    faults = [
        (4.0, {"fault": "break_pu", "symbol": "ETHUSDT"}),
        (4.0, {"fault": "skip_agg_ids", "symbol": "BTCUSDT", "count": 3}),
    ]
    records, accounting, seen = run_market(tmp_path, SPOT, symbols, faults)

    check_recorded_as_sent(records, accounting, tmp_path, SPOT)
    check_books_synced_from_the_market_snapshots(records, accounting, seen["health"], SPOT)
    [depth_gap] = records_of(records, "gap", "ethusdt@depth@100ms")
    assert depth_gap["reason"] == "depth U chain break" and depth_gap["missing"] >= 1
    assert not records_of(records, "gap", "btcusdt@depth@100ms")
    snapshots = records_of(records, "snapshot")
    assert sorted((r["symbol"], r["reason"]) for r in snapshots) == [
        ("BTCUSDT", "start"),
        ("ETHUSDT", "U chain break"),
        ("ETHUSDT", "start"),
    ]
    fresh = next(r for r in snapshots if r["reason"] == "U chain break")
    assert fresh["t"] > depth_gap["t"] and set(fresh["f"]) == {"lastUpdateId", "bids", "asks"}, "stored verbatim"

    [trade_gap] = records_of(records, "gap", "btcusdt@aggTrade")
    assert trade_gap["missing"] == 3 and accounting["rest"]["answered"]["aggTrades"], "backfilled from /api/v3"
    declared = [r for r in records_of(records, "backfill") if r["outcome"] == "declared"]
    assert [(r["from_id"], r["to_id"]) for r in declared] == [(trade_gap["expected"], trade_gap["got"] - 1)]
    assert not records_of(records, "rest_trade"), "the skipped ids were never issued: declared, nothing stored"

    assert seen["service"].open_interest is None and not records_of(records, KIND_OPEN_INTEREST), "no open interest"
    answered = {endpoint: sum(counts.values()) for endpoint, counts in accounting["rest"]["answered"].items()}
    assert answered.keys() == {"depth", "aggTrades"} and accounting["rest"]["requests"] == sum(answered.values())
    made = rest_requests_made(seen["service"])
    assert made == {endpoint: {"ok": count} for endpoint, count in answered.items()}, "no request to another path"


def test_coin_m_top_n_ranks_by_base_volume(tmp_path: Path) -> None:
    """At start nothing has traded (a tie, broken by name); resolved again every second, ``top:1`` follows the
    contract the exchange's own ``ticker/24hr`` ranks first by ``baseVolume`` (COIN-M has no ``quoteVolume``)."""
    listed = ("BTCUSD_PERP", "ETHUSD_PERP")
    seen: dict[str, Any] = {}

    async def scenario(sim, service) -> None:
        await asyncio.sleep(3.5)
        _, _, tickers = await http_get(f"{sim.rest_base}{COINM.rest_path('ticker/24hr')}")
        seen["volumes"] = {row["symbol"]: float(row["baseVolume"]) for row in tickers}
        seen["recorded"] = service.symbols

    _, accounting = collect_in_process(
        tmp_path,
        scenario,
        symbols=("top:1",),
        simulator_symbols=listed,
        simulator_settings={"market": "coinm"},
        market="coinm",
        symbols_refresh_s=1.0,
        **{**MARKET_SETTINGS, "open_interest_interval_s": 0.0},
    )
    busiest = max(seen["volumes"], key=seen["volumes"].__getitem__)
    assert seen["recorded"] == (busiest,) and seen["volumes"][busiest] > 2 * min(seen["volumes"].values())
    answered = accounting["rest"]["answered"]
    assert answered["exchangeInfo"][""] >= 3 and sum(answered["ticker/24hr"].values()) >= 3 * len(listed)

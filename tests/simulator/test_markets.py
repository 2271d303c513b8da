"""COIN-M and spot over real sockets: unrouted websocket paths, each market's frame layouts and REST bodies, its depth
chain, the futures-only parts spot lacks, and the accounting matching what a client received."""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from harvest_pipeline.markets import MARKETS
from harvest_pipeline.simulator import Simulator, SimulatorConfig, running_simulator
from harvest_pipeline.simulator.command import config_from_args, register
from harvest_pipeline.simulator.dialects import DIALECTS
from tests.simulator.ws_clients import collect, collect_then_unsubscribe, http_get, run

RECORD_S = 3.2
"""Long enough for the slow streams: the 3 s mark price and spot's 1 s depth diffs."""
FUTURES_KINDS = (
    "aggTrade", "trade", "depth@100ms", "depth20@100ms", "bookTicker", "markPrice@1s", "markPrice", "forceOrder",
    "kline_1m",
)  # fmt: skip
SPOT_KINDS = ("aggTrade", "trade", "depth@100ms", "depth", "depth20@100ms", "bookTicker", "kline_1m")
FUTURES_ONLY_KINDS = ("markPrice@1s", "forceOrder")
KLINE_KEYS = ["t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q", "B"]
COINM_LAYOUTS = {
    "aggTrade": ["e", "E", "a", "s", "p", "q", "f", "l", "T", "m"],
    "trade": ["e", "E", "T", "s", "t", "p", "q", "X", "m"],
    "depthUpdate": ["e", "E", "T", "s", "ps", "U", "u", "pu", "b", "a"],
    "bookTicker": ["e", "u", "E", "T", "s", "ps", "b", "B", "a", "A"],
    "markPriceUpdate": ["e", "E", "s", "p", "i", "P", "r", "T"],
    "forceOrder": ["e", "E", "o"],
    "kline": ["e", "E", "s", "k"],
}
SPOT_LAYOUTS = {
    "aggTrade": ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"],
    "trade": ["e", "E", "s", "t", "p", "q", "T", "m", "M"],
    "depthUpdate": ["e", "E", "s", "U", "u", "b", "a"],
    "bookTicker": ["u", "s", "b", "B", "a", "A"],
    "partialDepth": ["lastUpdateId", "bids", "asks"],
    "kline": ["e", "E", "s", "k"],
}
FORCE_ORDER_KEYS = ["s", "ps", "S", "o", "f", "q", "p", "ap", "X", "l", "z", "T"]


def streams_of(symbol: str, kinds: tuple[str, ...]) -> list[str]:
    return [f"{symbol.lower()}@{kind}" for kind in kinds]


def frame_type(payload: dict[str, Any]) -> str:
    """A frame's event type; spot's bookTicker and partial book carry none and are told apart by their keys."""
    if "e" in payload:
        return str(payload["e"])
    return "partialDepth" if "lastUpdateId" in payload else "bookTicker"


async def http_status(url: str) -> tuple[int, bytes]:
    """Status and raw body of a GET (for answers that are not JSON)."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read()


class Recording:
    """What one client saw from every kind of two symbols: one combined connection, one raw one."""

    def __init__(self, combined: list[str], raw: list[str], accounting: dict[str, Any], rest: dict[str, Any]):
        self.combined = [orjson.loads(frame) for frame in combined]
        self.raw = [orjson.loads(frame) for frame in raw]
        self.accounting = accounting
        self.rest = rest

    def stream(self, name: str) -> list[dict[str, Any]]:
        """The payloads of one stream of the combined connection."""
        return [frame["data"] for frame in self.combined if frame["stream"] == name]

    def payloads(self) -> list[dict[str, Any]]:
        """Every payload received, combined and raw."""
        return [frame["data"] for frame in self.combined] + self.raw

    def connection(self, path_start: str) -> dict[str, Any]:
        """The accounting of the connection whose path starts with ``path_start``."""
        [record] = [c for c in self.accounting["connections"].values() if c["path"].startswith(path_start)]
        return record


async def record_every_kind(
    sim: Simulator, combined_symbol: str, raw_symbol: str, kinds: tuple[str, ...], rest: Callable[[], Awaitable[Any]]
) -> Recording:
    """Every kind of ``combined_symbol`` on ``/stream?streams=`` and of ``raw_symbol`` on ``/ws/a/b/...`` for
    ``RECORD_S``, both ended by an UNSUBSCRIBE (so exactly what the accounting counts); ``rest`` runs meanwhile."""
    combined_streams, raw_streams = streams_of(combined_symbol, kinds), streams_of(raw_symbol, kinds)
    async with (
        connect(f"{sim.ws_base}/stream?streams={'/'.join(combined_streams)}", max_size=None) as combined,
        connect(f"{sim.ws_base}/ws/{'/'.join(raw_streams)}", max_size=None) as raw,
    ):

        async def rest_meanwhile() -> Any:
            await asyncio.sleep(1.0)
            return await rest()

        combined_frames, raw_frames, answers = await asyncio.gather(
            collect_then_unsubscribe(combined, RECORD_S, combined_streams),
            collect_then_unsubscribe(raw, RECORD_S, raw_streams),
            rest_meanwhile(),
        )
    return Recording(combined_frames, raw_frames, sim.accounting(), answers)


async def get_all(base: str, paths: dict[str, str]) -> dict[str, Any]:
    """``name -> (status, headers, body)`` of GET ``base + path`` for each named path."""
    return {name: await http_get(f"{base}{path}") for name, path in paths.items()}


def assert_sent_equals_received(recording: Recording) -> None:
    combined = recording.connection("/stream")
    received = Counter(frame["stream"] for frame in recording.combined)
    assert received and {name: tally["frames"] for name, tally in combined["streams"].items()} == {
        name: received.get(name, 0) for name in combined["streams"]
    }
    raw = recording.connection("/ws/")
    assert sum(tally["frames"] for tally in raw["streams"].values()) == len(recording.raw) > 0
    assert combined["route"] is None and raw["route"] is None, "unrouted"


def assert_layouts(recording: Recording, layouts: dict[str, list[str]]) -> None:
    seen: Counter[str] = Counter()
    for payload in recording.payloads():
        kind = frame_type(payload)
        seen[kind] += 1
        assert list(payload) == layouts[kind], kind
        if kind == "kline":
            assert list(payload["k"]) == KLINE_KEYS
    assert set(seen) == set(layouts), f"every frame type arrived: {seen}"


def assert_snapshot_fits(snapshot: dict[str, Any], diffs: list[dict[str, Any]]) -> None:
    last = snapshot["lastUpdateId"]
    assert any(diff["U"] <= last + 1 <= diff["u"] for diff in diffs), "the snapshot continues in the stream"


def assert_chain_by_first_id(diffs: list[dict[str, Any]]) -> None:
    assert len(diffs) >= 2
    for previous, diff in zip(diffs, diffs[1:], strict=False):
        assert diff["U"] == previous["u"] + 1


def test_coin_m_serves_the_usdm_frames_with_the_pair_on_unrouted_paths_and_dapi() -> None:
    async def rest_calls(sim: Simulator) -> dict[str, Any]:
        return await get_all(
            f"{sim.rest_base}/dapi/v1/",
            {
                "depth": "depth?symbol=BTCUSD_PERP&limit=1000",
                "info": "exchangeInfo",
                "ticker": "ticker/24hr",
                "interest": "openInterest?symbol=BTCUSD_PERP",
                "premium": "premiumIndex",
                "trades": "aggTrades?symbol=ETHUSD_PERP&limit=5",
            },
        )

    async def scenario() -> tuple[Recording, int, int]:
        config = SimulatorConfig(market="coinm", seed=7, rate=3.0, liquidation_share=0.5)
        async with running_simulator(config) as sim:
            recording = await record_every_kind(
                sim, "BTCUSD_PERP", "ETHUSD_PERP", FUTURES_KINDS, lambda: rest_calls(sim)
            )
            with pytest.raises(InvalidStatus) as routed:
                await connect(f"{sim.ws_base}/public/ws/btcusd_perp@bookTicker")
            routed_rest, _ = await http_status(f"{sim.rest_base}/fapi/v1/depth?symbol=BTCUSD_PERP")
        return recording, routed.value.response.status_code, routed_rest

    recording, routed_ws, routed_rest = run(scenario())
    assert (routed_ws, routed_rest) == (404, 404)
    assert_sent_equals_received(recording)
    assert_layouts(recording, COINM_LAYOUTS)
    for payload in recording.payloads():
        if frame_type(payload) == "forceOrder":
            assert list(payload["o"]) == FORCE_ORDER_KEYS and payload["o"]["ps"] == payload["o"]["s"].removesuffix(
                "_PERP"
            )
        elif "ps" in payload:
            assert payload["ps"] == payload["s"].removesuffix("_PERP")
    klines = [frame["k"] for frame in recording.stream("btcusd_perp@kline_1m") if frame["k"]["v"] != "0"]
    assert klines, "a minute with trades"
    for kline in klines:  # q is the base asset volume: contracts * 100 USD / price
        base = Decimal(kline["v"]) * 100 / Decimal(kline["c"])
        assert abs(Decimal(kline["q"]) - base) <= base * Decimal("0.001") and len(kline["q"].partition(".")[2]) == 8
    trades = recording.stream("btcusd_perp@aggTrade")
    assert trades and all(trade["q"].isdigit() and int(trade["q"]) >= 1 for trade in trades), "whole contracts"
    diffs = recording.stream("btcusd_perp@depth@100ms")
    for previous, diff in zip(diffs, diffs[1:], strict=False):
        assert diff["pu"] == previous["u"] and diff["U"] == previous["u"] + 1

    rest = recording.rest
    assert {status for status, _, _ in rest.values()} == {200}
    depth = rest["depth"][2]
    assert list(depth) == ["lastUpdateId", "E", "T", "symbol", "pair", "bids", "asks"]
    assert (depth["symbol"], depth["pair"]) == ("BTCUSD_PERP", "BTCUSD")
    assert_snapshot_fits(depth, diffs)
    info = {entry["symbol"]: entry for entry in rest["info"][2]["symbols"]}
    assert list(info) == ["BTCUSD_PERP", "ETHUSD_PERP"]
    btc = info["BTCUSD_PERP"]
    assert "status" not in btc and btc["contractStatus"] == "TRADING" and btc["contractType"] == "PERPETUAL"
    assert (btc["pair"], btc["contractSize"], info["ETHUSD_PERP"]["contractSize"]) == ("BTCUSD", 100, 10)
    assert {f["filterType"]: f for f in btc["filters"]}["PRICE_FILTER"]["tickSize"] == "0.1"
    assert rest["info"][2]["rateLimits"][0]["limit"] == 2400
    for row in rest["ticker"][2]:
        assert "quoteVolume" not in row and {"pair", "volume", "baseVolume"} <= set(row)
        size = info[row["symbol"]]["contractSize"]
        expected = Decimal(row["volume"]) * size / Decimal(row["weightedAvgPrice"])
        assert abs(Decimal(row["baseVolume"]) - expected) <= expected * Decimal("0.0001") + Decimal("1e-8")
        assert len(row["baseVolume"].partition(".")[2]) == 8
    interest = rest["interest"][2]
    assert list(interest) == ["symbol", "pair", "openInterest", "contractType", "time"]
    assert interest["openInterest"].isdigit() and interest["pair"] == "BTCUSD"
    assert [row["pair"] for row in rest["premium"][2]] == ["BTCUSD", "ETHUSD"]
    assert len(rest["trades"][2]) == 5 and "M" not in rest["trades"][2][0]
    answered = recording.accounting["rest"]["answered"]
    assert answered["depth"] == {"BTCUSD_PERP": 1} and answered["openInterest"] == {"BTCUSD_PERP": 1}
    assert answered["premiumIndex"] == {"BTCUSD_PERP": 1, "ETHUSD_PERP": 1}


def test_spot_serves_its_own_frames_and_rest_and_nothing_only_futures_have() -> None:
    async def rest_calls(sim: Simulator) -> dict[str, Any]:
        return await get_all(
            f"{sim.rest_base}/api/v3/",
            {
                "depth": "depth?symbol=BTCUSDT&limit=5000",
                "default_depth": "depth?symbol=ETHUSDT",
                "info": "exchangeInfo",
                "ticker": "ticker/24hr?symbol=BTCUSDT",
                "trades": "aggTrades?symbol=BTCUSDT&limit=5",
                "interest": "openInterest?symbol=BTCUSDT",
                "premium": "premiumIndex",
            },
        )

    async def scenario() -> tuple[Recording, list[int]]:
        async with running_simulator(SimulatorConfig(market="spot", seed=7, rate=3.0)) as sim:
            recording = await record_every_kind(
                sim, "BTCUSDT", "ETHUSDT", SPOT_KINDS + FUTURES_ONLY_KINDS, lambda: rest_calls(sim)
            )
            refused = []
            for path in ("/public/ws/btcusdt@aggTrade", "/market/stream?streams=btcusdt@aggTrade"):
                with pytest.raises(InvalidStatus) as routed:
                    await connect(f"{sim.ws_base}{path}")
                refused.append(routed.value.response.status_code)
            for path in ("/fapi/v1/depth?symbol=BTCUSDT", "/dapi/v1/time"):
                refused.append((await http_status(f"{sim.rest_base}{path}"))[0])
        return recording, refused

    recording, refused = run(scenario())
    assert refused == [404, 404, 404, 404]
    assert_sent_equals_received(recording)
    assert_layouts(recording, SPOT_LAYOUTS)
    combined = recording.connection("/stream")["streams"]
    assert all(combined[f"btcusdt@{kind}"]["frames"] == 0 for kind in FUTURES_ONLY_KINDS), "acknowledged, silent"
    assert all(payload["M"] is True for payload in recording.payloads() if frame_type(payload) in ("aggTrade", "trade"))
    diffs = recording.stream("btcusdt@depth@100ms")
    assert_chain_by_first_id(diffs)
    seconds = recording.stream("btcusdt@depth")
    assert_chain_by_first_id(seconds)
    assert {diff["U"] for diff in seconds} <= {diff["U"] for diff in diffs} | {seconds[0]["U"]}
    assert {diff["u"] for diff in seconds} <= {diff["u"] for diff in diffs}, "a second's diffs merged"
    assert all(len(book["bids"]) == 20 == len(book["asks"]) for book in recording.stream("btcusdt@depth20@100ms"))

    rest = recording.rest
    assert (rest["interest"][0], rest["premium"][0]) == (404, 404)
    assert rest["interest"][2]["code"] == -1000, "a Binance error body"
    status, headers, depth = rest["depth"]
    assert status == 200 and list(depth) == ["lastUpdateId", "bids", "asks"] and headers["X-MBX-USED-WEIGHT-1M"]
    assert_snapshot_fits(depth, diffs)
    assert len(rest["default_depth"][2]["bids"]) == 100, "spot's default limit"
    info = rest["info"][2]
    assert info["rateLimits"][0]["limit"] == 6000
    btc = {entry["symbol"]: entry for entry in info["symbols"]}["BTCUSDT"]
    assert btc["status"] == "TRADING" and (btc["baseAsset"], btc["quoteAsset"]) == ("BTC", "USDT")
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert (filters["PRICE_FILTER"]["tickSize"], filters["LOT_SIZE"]["stepSize"]) == ("0.01", "0.00001")
    assert {"volume", "quoteVolume"} <= set(rest["ticker"][2])
    assert [trade["M"] for trade in rest["trades"][2]] == [True] * 5
    answered = recording.accounting["rest"]["answered"]
    assert set(answered) == {"depth", "exchangeInfo", "ticker/24hr", "aggTrades"}
    assert recording.accounting["rest"]["rejected"] == {"429": 0}


def test_spot_depth_weights_follow_the_limit_and_the_budget_is_the_markets() -> None:
    async def scenario() -> list[int]:
        async with running_simulator(SimulatorConfig(market="spot", symbols=("BTCUSDT",), seed=2)) as sim:
            used = []
            for limit in (100, 101, 1000, 1001, 5000):
                _, headers, _ = await http_get(f"{sim.rest_base}/api/v3/depth?symbol=BTCUSDT&limit={limit}")
                used.append(int(headers["X-MBX-USED-WEIGHT-1M"]))
            return [now - before for before, now in zip([0, *used], used, strict=False)]

    assert run(scenario()) == [5, 25, 50, 250, 250]
    assert SimulatorConfig(market="spot").weight_limit_per_minute == 6000
    assert SimulatorConfig(market="coinm").weight_limit_per_minute == 2400
    assert SimulatorConfig(market="spot", weight_limit_per_minute=100).weight_limit_per_minute == 100


def test_the_depth_gap_fault_on_spot_skips_update_ids() -> None:
    async def scenario() -> list[dict[str, Any]]:
        config = SimulatorConfig(market="spot", symbols=("ETHUSDT",), seed=3, rate=2.0)
        async with (
            running_simulator(config) as sim,
            connect(f"{sim.ws_base}/ws/ethusdt@depth@100ms") as ws,
        ):
            frames = await collect(ws, 0.6)
            await sim.apply_fault({"fault": "break_pu", "symbol": "ETHUSDT"})
            frames += await collect(ws, 0.8)
        return [orjson.loads(frame) for frame in frames]

    diffs = run(scenario())
    steps = [diff["U"] - previous["u"] for previous, diff in zip(diffs, diffs[1:], strict=False)]
    assert sorted(set(steps)) == [1, max(steps)] and max(steps) > 1 and steps.count(max(steps)) == 1
    assert all("pu" not in diff for diff in diffs)


def test_listing_and_delisting_on_coin_m_and_spot_use_the_markets_status_fields() -> None:
    async def post_listing(admin_base: str, body: dict[str, Any]) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{admin_base}/admin/listing", data=orjson.dumps(body)) as answer,
        ):
            assert answer.status == 200
            return orjson.loads(await answer.read())

    async def scenario(market: str, symbol: str) -> list[dict[str, Any]]:
        async with running_simulator(SimulatorConfig(market=market, seed=4)) as sim:
            listed = await post_listing(sim.admin_base, {"symbol": symbol, "status": "TRADING"})
            delisted = await post_listing(sim.admin_base, {"symbol": symbol, "status": "SETTLING"})
            return [listed, delisted, sim.accounting()["listings"][symbol]]

    listed, delisted, changes = run(scenario("coinm", "DOGEUSD_PERP"))
    assert (listed["contractStatus"], delisted["contractStatus"]) == ("TRADING", "SETTLING")
    assert (listed["pair"], listed["baseAsset"], listed["contractSize"]) == ("DOGEUSD", "DOGE", 10)
    assert [change["status"] for change in changes] == ["TRADING", "SETTLING"]
    listed, delisted, _ = run(scenario("spot", "DOGEUSDT"))
    assert (listed["status"], delisted["status"]) == ("TRADING", "BREAK")


def test_the_market_setting_chooses_the_instruments_and_refuses_unknown_markets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert config_from_args(parser.parse_args(["simulate", "--market", "coinm"])).symbols == (
        "BTCUSD_PERP",
        "ETHUSD_PERP",
    )
    assert config_from_args(parser.parse_args(["simulate", "--market", "spot"])).symbols == ("BTCUSDT", "ETHUSDT")
    assert config_from_args(parser.parse_args(["simulate"])).market == "usdm"
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--help"])
    assert "--market {usdm,coinm,spot}" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown market 'nyse': expected one of usdm, coinm, spot"):
        SimulatorConfig(market="nyse")
    with pytest.raises(ValueError, match="unknown symbol 'BTCUSDT'; the simulator trades BTCUSD_PERP"):
        SimulatorConfig(market="coinm", symbols=("BTCUSDT",))


def test_every_dialect_charges_the_markets_snapshot_weight_at_its_deepest_limit() -> None:
    for name, each in MARKETS.items():
        rule = DIALECTS[name].depth_rule
        assert rule.max_limit == each.snapshot_limit and rule.levels(each.snapshot_limit) == each.snapshot_limit
        assert rule.weight(each.snapshot_limit) == each.snapshot_weight
        assert set(DIALECTS[name].stream_kinds) >= set(each.stream_kinds)

"""The REST endpoints third-party Binance clients call, against a real simulator over HTTP on every market: aggTrades
time windows, trades and historicalTrades equal to ``@trade``, klines equal to ``@kline_1m``, bookTicker equal to
``@bookTicker``, a complete exchangeInfo, Binance's error codes and the request weights."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import connect

from harvest_pipeline.markets import COINM, SPOT, USDM
from harvest_pipeline.simulator import Simulator, SimulatorConfig, running_simulator, wire
from tests.simulator.ws_clients import FROZEN_MARKET, clock_offset_before, collect, payloads, run

MARKETS = (USDM.name, COINM.name, SPOT.name)
SYMBOL = {USDM.name: "BTCUSDT", COINM.name: "BTCUSD_PERP", SPOT.name: "BTCUSDT"}
API_KEY = {"X-MBX-APIKEY": "any-key"}

FUTURES_ENVELOPE = {"timezone", "serverTime", "futuresType", "rateLimits", "exchangeFilters", "assets", "symbols"}
FUTURES_SYMBOL = {
    "symbol", "pair", "contractType", "deliveryDate", "onboardDate", "status", "maintMarginPercent",
    "requiredMarginPercent", "baseAsset", "quoteAsset", "marginAsset", "pricePrecision", "quantityPrecision",
    "baseAssetPrecision", "quotePrecision", "underlyingType", "underlyingSubType", "settlePlan", "triggerProtect",
    "liquidationFee", "marketTakeBound", "maxMoveOrderLimit", "filters", "orderTypes", "timeInForce",
}  # fmt: skip
COINM_SYMBOL = (FUTURES_SYMBOL - {"status", "settlePlan"}) | {"contractStatus", "contractSize", "equalQtyPrecision"}
SPOT_ENVELOPE = {"timezone", "serverTime", "rateLimits", "exchangeFilters", "symbols"}
SPOT_SYMBOL = {
    "symbol", "status", "baseAsset", "baseAssetPrecision", "quoteAsset", "quotePrecision", "quoteAssetPrecision",
    "baseCommissionPrecision", "quoteCommissionPrecision", "orderTypes", "icebergAllowed", "ocoAllowed",
    "otoAllowed", "quoteOrderQtyMarketAllowed", "allowTrailingStop", "cancelReplaceAllowed", "isSpotTradingAllowed",
    "isMarginTradingAllowed", "filters", "permissions", "permissionSets", "defaultSelfTradePreventionMode",
    "allowedSelfTradePreventionModes",
}  # fmt: skip
FILTER_KEYS = {
    "PRICE_FILTER": {"filterType", "minPrice", "maxPrice", "tickSize"},
    "LOT_SIZE": {"filterType", "minQty", "maxQty", "stepSize"},
    "MARKET_LOT_SIZE": {"filterType", "minQty", "maxQty", "stepSize"},
    "MAX_NUM_ORDERS": {"filterType", "limit"},
    "MAX_NUM_ALGO_ORDERS": {"filterType", "limit"},
    "MIN_NOTIONAL": {"filterType", "notional"},
    "PERCENT_PRICE": {"filterType", "multiplierUp", "multiplierDown", "multiplierDecimal"},
}
EXPECTED_FILTERS = {
    USDM.name: set(FILTER_KEYS),
    COINM.name: set(FILTER_KEYS) - {"MIN_NOTIONAL"},
    SPOT.name: {
        "PRICE_FILTER",
        "LOT_SIZE",
        "MARKET_LOT_SIZE",
        "ICEBERG_PARTS",
        "TRAILING_DELTA",
        "PERCENT_PRICE_BY_SIDE",
        "NOTIONAL",
        "MAX_NUM_ORDERS",
        "MAX_NUM_ALGO_ORDERS",
    },  # fmt: skip
}


async def get(sim: Simulator, endpoint: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    """``(status, used weight, body)`` of ``GET <prefix>/endpoint?params`` on the simulator's market."""
    url = f"{sim.rest_base}{sim.exchange.dialect.rest_prefix}{endpoint}"
    if params:
        url += f"?{urlencode(params)}"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, int(response.headers["X-MBX-USED-WEIGHT-1M"]), orjson.loads(await response.read())


def ws_url(sim: Simulator, streams: list[str]) -> str:
    route = f"/{wire.route_of(streams[0])}" if sim.exchange.dialect.market.routed else ""
    return f"{sim.ws_base}{route}/stream?streams={'/'.join(streams)}"


async def trades_seen_from_start(sim: Simulator, stream: str, seconds: float) -> list[dict[str, Any]]:
    """Every frame of ``stream`` from a frozen start: subscribe, let the market run ``seconds``, freeze it again."""
    async with connect(ws_url(sim, [stream])) as ws:
        await sim.apply_fault({"fault": "clear"})
        frames = await collect(ws, seconds)
        await sim.apply_fault(FROZEN_MARKET)
        frames += await collect(ws, 0.2)
    return payloads(frames)


@pytest.mark.parametrize("market", MARKETS)
def test_agg_trades_time_windows_follow_binances_rules(market: str) -> None:
    async def scenario() -> dict[str, Any]:
        symbol = SYMBOL[market]
        async with running_simulator(SimulatorConfig(market=market, symbols=(symbol,), seed=3, rate=4.0)) as sim:
            await asyncio.sleep(1.2)
            await sim.apply_fault(FROZEN_MARKET)
            _, _, everything = await get(sim, "aggTrades", symbol=symbol, limit=1000)
            middle = everything[len(everything) // 2]["T"]
            last = everything[-1]["T"]
            return {
                "everything": everything,
                "middle": middle,
                "latest": (await get(sim, "aggTrades", symbol=symbol))[2],
                "from_start": (await get(sim, "aggTrades", symbol=symbol, startTime=middle, limit=5))[2],
                "to_end": (await get(sim, "aggTrades", symbol=symbol, endTime=middle, limit=5))[2],
                "window": (await get(sim, "aggTrades", symbol=symbol, startTime=middle, endTime=last))[2],
                "hour": await get(sim, "aggTrades", symbol=symbol, startTime=middle, endTime=middle + 3_599_999),
                "old": (await get(sim, "aggTrades", symbol=symbol, endTime=everything[0]["T"] - 1))[2],
                "an_hour": await get(sim, "aggTrades", symbol=symbol, startTime=middle, endTime=middle + 3_600_000),
                "too_wide": await get(sim, "aggTrades", symbol=symbol, startTime=middle, endTime=middle + 3_600_001),
                "with_id": await get(sim, "aggTrades", symbol=symbol, fromId=everything[0]["a"], startTime=middle),
                "id_and_end": await get(sim, "aggTrades", symbol=symbol, fromId=1, endTime=middle),
                "too_many": await get(sim, "aggTrades", symbol=symbol, limit=1001),
            }

    got = run(scenario())
    everything, middle = got["everything"], got["middle"]
    assert 5 < len(everything) < 1000 and got["latest"] == everything[-500:], "no parameters: the newest 500"
    assert got["from_start"] == [trade for trade in everything if trade["T"] >= middle][:5]
    assert got["to_end"] == [trade for trade in everything if trade["T"] <= middle][-5:]
    assert got["window"] == [trade for trade in everything if trade["T"] >= middle]
    assert got["hour"][0] == 200 and got["hour"][2] == got["window"], "a window just under an hour is served"
    assert got["an_hour"][0] == 200, "ccxt's fetch_trades(since) asks for exactly one hour"
    assert got["old"] == [], "nothing before the kept history"
    assert got["too_wide"][0] == 400
    assert got["too_wide"][2] == {"code": -1127, "msg": "More than 1 hours between startTime and endTime."}
    for refused in (got["with_id"], got["id_and_end"]):
        assert (refused[0], refused[2]) == (400, {"code": -1128, "msg": "Combination of optional parameters invalid."})
    assert got["too_many"][0] == 400 and got["too_many"][2]["code"] == -1130
    assert got["too_many"][2]["msg"].startswith("Data sent for parameter 'limit' is not valid")


@pytest.mark.parametrize("market", MARKETS)
def test_trades_and_historical_trades_are_the_trade_streams_trades(market: str) -> None:
    async def scenario() -> dict[str, Any]:
        symbol = SYMBOL[market]
        config = SimulatorConfig(market=market, symbols=(symbol,), seed=7, rate=3.0, faults=(FROZEN_MARKET,))
        async with running_simulator(config) as sim:
            streamed = await trades_seen_from_start(sim, f"{symbol.lower()}@trade", 1.0)
            first = streamed[0]["t"]
            return {
                "streamed": streamed,
                "recent": (await get(sim, "trades", symbol=symbol, limit=1000))[2],
                "newest": (await get(sim, "trades", symbol=symbol, limit=3))[2],
                "history": (await get(sim, "historicalTrades", API_KEY, symbol=symbol, fromId=first, limit=1000))[2],
                "page": (await get(sim, "historicalTrades", API_KEY, symbol=symbol, fromId=first + 1, limit=2))[2],
                "no_key": await get(sim, "historicalTrades", symbol=symbol, fromId=first),
                "too_many": await get(sim, "trades", symbol=symbol, limit=1001),
                "no_symbol": await get(sim, "trades"),
            }

    got = run(scenario())
    streamed = got["streamed"]
    expected = [(t["t"], t["p"], t["q"], t["T"], t["m"]) for t in streamed]
    for answer in ("recent", "history"):
        rows = got[answer]
        assert [(t["id"], t["price"], t["qty"], t["time"], t["isBuyerMaker"]) for t in rows] == expected, answer
    assert [t["id"] for t in got["newest"]] == [t["t"] for t in streamed[-3:]]
    assert [t["id"] for t in got["page"]] == [t["t"] for t in streamed[1:3]]
    assert got["no_key"][0] == 401 and got["no_key"][2] == {"code": -2014, "msg": "API-key format invalid."}
    assert got["too_many"][0] == 400 and got["too_many"][2]["code"] == -1130
    assert got["no_symbol"][0] == 400 and got["no_symbol"][2]["code"] == -1102
    volume_key = {USDM.name: "quoteQty", COINM.name: "baseQty", SPOT.name: "quoteQty"}[market]
    keys = ["id", "price", "qty", volume_key, "time", "isBuyerMaker"] + (["isBestMatch"] if market == SPOT.name else [])
    assert list(got["recent"][0]) == keys


@pytest.mark.parametrize("market", MARKETS)
def test_klines_equal_the_kline_streams_closed_minutes_and_larger_intervals_merge_them(market: str) -> None:
    async def scenario() -> dict[str, Any]:
        symbol = SYMBOL[market]
        config = SimulatorConfig(
            market=market, symbols=(symbol,), seed=9, rate=3.0, clock_offset_ms=clock_offset_before(60_000, 1_500)
        )
        async with running_simulator(config) as sim, connect(ws_url(sim, [f"{symbol.lower()}@kline_1m"])) as ws:
            frames = await collect(ws, 2.5)
            await sim.apply_fault(FROZEN_MARKET)
            minutes = (await get(sim, "klines", symbol=symbol, interval="1m"))[2]
            return {
                "frames": payloads(frames),
                "minutes": minutes,
                "first": (await get(sim, "klines", symbol=symbol, interval="1m", startTime=0, limit=1))[2],
                "until": (await get(sim, "klines", symbol=symbol, interval="1m", endTime=minutes[0][0]))[2],
                "after": (await get(sim, "klines", symbol=symbol, interval="1m", startTime=minutes[-1][0] + 1))[2],
                "hours": (await get(sim, "klines", symbol=symbol, interval="4h"))[2],
                "bad_interval": await get(sim, "klines", symbol=symbol, interval="7m"),
                "too_many": await get(sim, "klines", symbol=symbol, interval="1m", limit=1501),
                "weights": [
                    (await get(sim, "klines", symbol=symbol, interval="1m", limit=limit))[1] for limit in LIMITS
                ],
            }

    got = run(scenario())
    closed = [frame["k"] for frame in got["frames"] if frame["k"]["x"]]
    assert len(closed) == 1, "the stream closed the minute that ended"
    k = closed[0]
    row = next(row for row in got["minutes"] if row[0] == k["t"])
    assert row == [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"], k["n"], k["V"], k["Q"], "0"]
    assert [row[0] for row in got["minutes"]][-2:] == [k["t"], k["t"] + 60_000], "the current minute comes last"
    assert got["first"] == got["minutes"][:1] and got["until"] == got["minutes"][:1] and got["after"] == []
    minutes, (hours,) = got["minutes"], got["hours"]
    traded = [minute for minute in minutes if minute[8]]
    assert hours[0] == minutes[0][0] - minutes[0][0] % 14_400_000 and hours[6] == hours[0] + 14_400_000 - 1
    assert hours[1] == traded[0][1] and hours[4] == minutes[-1][4] and hours[8] == sum(m[8] for m in minutes)
    assert hours[2] == max((m[2] for m in traded), key=float) and hours[3] == min((m[3] for m in traded), key=float)
    assert got["bad_interval"][0] == 400 and got["bad_interval"][2]["code"] == -1120
    assert got["too_many"][0] == 400 and got["too_many"][2]["code"] == -1130
    used = got["weights"]
    expected = [2, 2, 2, 2] if market == SPOT.name else [1, 2, 5, 10]
    assert [after - before for before, after in zip(used, used[1:], strict=False)] == expected[1:]


LIMITS = (99, 499, 1000, 1500)
"""klines limits at each of Binance's weight steps (futures: 1, 2, 5, 10)."""


@pytest.mark.parametrize("market", MARKETS)
def test_book_ticker_is_the_last_book_ticker_frame(market: str) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], Any, Any]:
        symbol = SYMBOL[market]
        config = SimulatorConfig(market=market, symbols=(symbol,), seed=5, rate=2.0, faults=(FROZEN_MARKET,))
        async with running_simulator(config) as sim:
            frames = await trades_seen_from_start(sim, f"{symbol.lower()}@bookTicker", 0.5)
            return frames, await get(sim, "ticker/bookTicker", symbol=symbol), await get(sim, "ticker/bookTicker")

    frames, (status, _, single), (_, _, listed) = run(scenario())
    last = frames[-1]
    assert status == 200 and [row["symbol"] for row in listed] == [single["symbol"]]
    levels = {"bidPrice": last["b"], "bidQty": last["B"], "askPrice": last["a"], "askQty": last["A"]}
    assert {key: single[key] for key in levels} == levels
    if market == SPOT.name:
        assert list(single) == ["symbol", "bidPrice", "bidQty", "askPrice", "askQty"]
    else:
        assert single["lastUpdateId"] >= last["u"] and single["time"] >= last["E"], "the book's id, past the top's"
        pair = ["pair"] if market == COINM.name else []
        assert list(single) == ["symbol", *pair, *levels, "time", "lastUpdateId"]


@pytest.mark.parametrize("market", MARKETS)
def test_exchange_info_carries_every_documented_field(market: str) -> None:
    async def scenario() -> Any:
        async with running_simulator(SimulatorConfig(market=market)) as sim:
            return await get(sim, "exchangeInfo")

    status, weight, info = run(scenario())
    envelope, symbol_keys = {
        USDM.name: (FUTURES_ENVELOPE, FUTURES_SYMBOL),
        COINM.name: (FUTURES_ENVELOPE - {"futuresType", "assets"}, COINM_SYMBOL),
        SPOT.name: (SPOT_ENVELOPE, SPOT_SYMBOL),
    }[market]
    assert status == 200 and weight == (20 if market == SPOT.name else 1)
    assert set(info) == envelope and info["exchangeFilters"] == []
    limits = {(limit["rateLimitType"], limit["interval"], limit["intervalNum"]) for limit in info["rateLimits"]}
    assert ("REQUEST_WEIGHT", "MINUTE", 1) in limits and ("ORDERS", "SECOND", 10) in limits
    if market == USDM.name:
        assert {"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"} in info["assets"]
    for entry in info["symbols"]:
        assert set(entry) == symbol_keys, entry["symbol"]
        filters = {each["filterType"]: each for each in entry["filters"]}
        assert set(filters) == EXPECTED_FILTERS[market]
        for name, keys in FILTER_KEYS.items():
            if name in filters and market != SPOT.name or name in ("PRICE_FILTER", "LOT_SIZE", "MARKET_LOT_SIZE"):
                assert set(filters[name]) == keys, (entry["symbol"], name)
        price, lot = filters["PRICE_FILTER"], filters["LOT_SIZE"]
        assert float(price["minPrice"]) < float(price["maxPrice"]) and float(lot["minQty"]) < float(lot["maxQty"])
        assert entry[USDM.listing_status_key if market != COINM.name else COINM.listing_status_key] == "TRADING"


def test_forced_failures_carry_binances_codes_and_unknown_paths_are_404() -> None:
    async def scenario() -> list[Any]:
        async with running_simulator(SimulatorConfig(symbols=("BTCUSDT",))) as sim:
            answers = []
            for status in (500, 503, 418, 429):
                await sim.apply_fault({"fault": "rest_status", "status": status})
                answers.append(await get(sim, "time"))
            answers.append(await get(sim, "nope"))
            answers.append(await get(sim, "time"))
            return answers

    *forced, unknown, healthy = run(scenario())
    internal = {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}
    assert [(status, body) for status, _, body in forced[:2]] == [(500, internal), (503, internal)]
    assert [(status, body["code"]) for status, _, body in forced[2:]] == [(418, -1003), (429, -1003)]
    assert unknown[0] == 404 and healthy[0] == 200


def test_new_endpoints_weigh_as_on_binance_and_are_counted_as_answered() -> None:
    async def scenario() -> tuple[list[int], dict[str, Any]]:
        async with running_simulator(SimulatorConfig(symbols=("BTCUSDT", "ETHUSDT"), rate=2.0)) as sim:
            sim.rest.budget.clock = lambda: 1_800_000_030.0  # mid-minute, so the budget cannot roll over mid-test
            await asyncio.sleep(0.3)
            used = [(await get(sim, "time"))[1]]
            for endpoint, headers, params in (
                ("trades", None, {"symbol": "BTCUSDT"}),  # 5
                ("historicalTrades", API_KEY, {"symbol": "BTCUSDT"}),  # 20
                ("klines", None, {"symbol": "ETHUSDT", "interval": "1m"}),  # 5 (default limit 500)
                ("ticker/bookTicker", None, {"symbol": "BTCUSDT"}),  # 2
                ("ticker/bookTicker", None, {}),  # 5
                ("exchangeInfo", None, {}),  # 1
            ):
                used.append((await get(sim, endpoint, headers, **params))[1])
            return used, sim.accounting()["rest"]

    used, rest = run(scenario())
    assert [after - before for before, after in zip(used, used[1:], strict=False)] == [5, 20, 5, 2, 5, 1]
    assert rest["answered"] == {
        "time": {"": 1},
        "trades": {"BTCUSDT": 1},
        "historicalTrades": {"BTCUSDT": 1},
        "klines": {"ETHUSDT": 1},
        "ticker/bookTicker": {"BTCUSDT": 2, "ETHUSDT": 1},
        "exchangeInfo": {"": 1},
    }
    assert rest["weight_used"] == used[-1]

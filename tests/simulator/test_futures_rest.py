"""``GET /fapi/v1/openInterest``, ``/ticker/24hr`` and ``/premiumIndex`` over a real socket: layouts, weights, errors,
24 h statistics equal to the trades sent, and the accounting of the rows answered."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from websockets.asyncio.client import connect

from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from tests.simulator.ws_clients import FROZEN_MARKET, collect, http_get, payloads, run

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
TICKER_KEYS = [
    "symbol", "priceChange", "priceChangePercent", "weightedAvgPrice", "lastPrice", "lastQty", "openPrice",
    "highPrice", "lowPrice", "volume", "quoteVolume", "openTime", "closeTime", "firstId", "lastId", "count",
]  # fmt: skip


def test_24h_statistics_equal_the_trades_sent_and_symbols_rank_by_quote_volume() -> None:
    async def scenario() -> tuple[list[str], dict[str, Any], list[dict[str, Any]], int]:
        config = SimulatorConfig(symbols=SYMBOLS, seed=4, rate=2.0, faults=(FROZEN_MARKET,))
        async with (
            running_simulator(config) as sim,
            connect(f"{sim.ws_base}/market/stream?streams=btcusdt@trade") as ws,
        ):
            start_ms = sim.exchange.feed("BTCUSDT").klines.start_ms
            await sim.apply_fault({"fault": "clear"})
            frames = await collect(ws, 1.5)
            await sim.apply_fault(FROZEN_MARKET)
            frames += await collect(ws, 0.2)
            _, _, single = await http_get(f"{sim.rest_base}/fapi/v1/ticker/24hr?symbol=btcusdt")
            _, _, listed = await http_get(f"{sim.rest_base}/fapi/v1/ticker/24hr")
            return frames, single, listed, start_ms

    frames, single, listed, start_ms = run(scenario())
    trades = payloads(frames)
    prices = [Decimal(trade["p"]) for trade in trades]
    first, last = trades[0], trades[-1]
    assert list(single) == TICKER_KEYS and single == listed[0] | {"closeTime": single["closeTime"]}
    assert (single["firstId"], single["lastId"], single["count"]) == (first["t"], last["t"], len(trades))
    assert (single["openPrice"], single["lastPrice"], single["lastQty"]) == (first["p"], last["p"], last["q"])
    assert Decimal(single["highPrice"]) == max(prices) and Decimal(single["lowPrice"]) == min(prices)
    volume = sum(Decimal(trade["q"]) for trade in trades)
    quote = sum(price * Decimal(trade["q"]) for price, trade in zip(prices, trades, strict=True))
    assert Decimal(single["volume"]) == volume and Decimal(single["quoteVolume"]) == quote
    assert len(single["quoteVolume"].partition(".")[2]) == 5, "exact: price decimals + quantity decimals"
    assert Decimal(single["weightedAvgPrice"]) == (quote / volume).quantize(Decimal("0.01"))
    assert Decimal(single["priceChange"]) == prices[-1] - prices[0]
    assert Decimal(single["priceChangePercent"]) == ((prices[-1] - prices[0]) / prices[0] * 100).quantize(
        Decimal("0.001")
    )
    assert single["openTime"] == start_ms < single["closeTime"]
    assert [row["symbol"] for row in listed] == list(SYMBOLS) and all(list(row) == TICKER_KEYS for row in listed)
    quote_volumes = [Decimal(row["quoteVolume"]) for row in listed]
    assert len(set(quote_volumes)) == len(SYMBOLS) and min(quote_volumes) > 0, "symbols rank by quote volume"


def test_open_interest_moves_with_the_trades_and_errors_and_weights_are_binances() -> None:
    async def scenario() -> list[tuple[int, dict[str, str], Any]]:
        async with running_simulator(SimulatorConfig(symbols=("BTCUSDT", "XRPUSDT"), seed=6, rate=3.0)) as sim:
            sim.rest.budget.clock = lambda: 1_800_000_030.0  # mid-minute, so the budget cannot roll over mid-test
            base = f"{sim.rest_base}/fapi/v1"
            answers = [await http_get(f"{base}/openInterest?symbol=BTCUSDT")]
            await asyncio.sleep(2.1)
            for path in (
                "openInterest?symbol=BTCUSDT",  # 1
                "openInterest?symbol=xrpusdt",  # 1
                "openInterest",  # 1, HTTP 400
                "openInterest?symbol=NOPEUSDT",  # 1, HTTP 400
                "ticker/24hr?symbol=XRPUSDT",  # 1
                "ticker/24hr",  # 40
                "premiumIndex?symbol=BTCUSDT",  # 1
                "premiumIndex",  # 10
                "ticker/24hr?symbol=NOPEUSDT",  # 1, HTTP 400
            ):
                answers.append(await http_get(f"{base}/{path}"))
            answers.append((0, {}, sim.accounting()["rest"]))
            return answers

    answers = run(scenario())
    *answers, (_, _, rest) = answers
    first, later, xrp, missing, unknown = (body for _, _, body in answers[:5])
    assert list(first) == ["symbol", "openInterest", "time"] and first["symbol"] == "BTCUSDT"
    assert len(first["openInterest"].partition(".")[2]) == 3 and len(xrp["openInterest"].partition(".")[2]) == 1
    assert Decimal(later["openInterest"]) != Decimal(first["openInterest"]) and Decimal(later["openInterest"]) > 0
    assert later["time"] > first["time"] and xrp["symbol"] == "XRPUSDT"
    assert missing == unknown == answers[9][2] == {"code": -1121, "msg": "Invalid symbol."}
    assert [status for status, _, _ in answers] == [200, 200, 200, 400, 400, 200, 200, 200, 200, 400]
    used = [int(headers["X-MBX-USED-WEIGHT-1M"]) for _, headers, _ in answers]
    assert [after - before for before, after in zip(used, used[1:], strict=False)] == [1, 1, 1, 1, 1, 40, 1, 10, 1]
    assert rest["answered"] == {
        "openInterest": {"BTCUSDT": 2, "XRPUSDT": 1},
        "ticker/24hr": {"XRPUSDT": 2, "BTCUSDT": 1},
        "premiumIndex": {"BTCUSDT": 2, "XRPUSDT": 1},
    }, "rows of HTTP 200 answers only; a list counts for each of its symbols"
    assert rest["requests"] == 10 and rest["weight_used"] == used[-1]

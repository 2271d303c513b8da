"""REST over a real socket: snapshots, aggTrades by id, exchangeInfo, request weights and 429."""

from __future__ import annotations

import asyncio

from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from tests.simulator.ws_clients import http_get, run


def test_agg_trades_from_id_continue_the_id_sequence_and_exchange_info_lists_sizes() -> None:
    async def scenario() -> None:
        async with running_simulator(SimulatorConfig(symbols=("SOLUSDT",), seed=2, rate=5.0)) as sim:
            await asyncio.sleep(0.5)
            _, _, latest = await http_get(f"{sim.rest_base}/fapi/v1/aggTrades?symbol=SOLUSDT&limit=5")
            first = latest[0]["a"]
            status, _, page = await http_get(f"{sim.rest_base}/fapi/v1/aggTrades?symbol=SOLUSDT&fromId={first}&limit=3")
            _, _, info = await http_get(f"{sim.rest_base}/fapi/v1/exchangeInfo")
            bad_status, _, bad = await http_get(f"{sim.rest_base}/fapi/v1/depth?symbol=NOPEUSDT")
        assert status == 200 and [trade["a"] for trade in page] == [first, first + 1, first + 2]
        assert page == latest[:3]
        assert list(page[0]) == ["a", "p", "q", "f", "l", "T", "m"]
        filters = {f["filterType"]: f for f in info["symbols"][0]["filters"]}
        assert info["symbols"][0]["symbol"] == "SOLUSDT" and filters["PRICE_FILTER"]["tickSize"] == "0.0100"
        assert bad_status == 400 and bad["code"] == -1121

    run(scenario())


def test_request_weight_is_reported_and_a_request_past_the_budget_gets_429_with_retry_after() -> None:
    async def scenario() -> None:
        config = SimulatorConfig(symbols=("BTCUSDT",), weight_limit_per_minute=25)
        async with running_simulator(config) as sim:
            sim.rest.budget.clock = lambda: 1_800_000_030.0  # mid-minute, so the budget cannot roll over mid-test
            url = f"{sim.rest_base}/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
            first_status, first_headers, _ = await http_get(url)
            second_status, second_headers, body = await http_get(url)
            accounting = sim.accounting()["rest"]
        assert first_status == 200 and first_headers["X-MBX-USED-WEIGHT-1M"] == "20"
        assert second_status == 429 and second_headers["Retry-After"] == "30"
        assert body["code"] == -1003
        assert accounting == {
            "requests": 2,
            "connections": 2,  # one aiohttp session per request
            "weight_used": 20,
            "rejected": {"429": 1},
            "max_weight_per_minute": 20,
            "weight_by_minute": {"1800000000": 20},
            "answered": {"depth": {"BTCUSDT": 1}},
        }

    run(scenario())

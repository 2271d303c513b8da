"""``GET /fapi/v1/aggTrades`` as a gap filler uses it, reconciled with the accounting of the ids the market issued."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlencode

from harvest_pipeline.simulator import Simulator, SimulatorConfig, running_simulator
from tests.simulator.ws_clients import admin_fault, http_get, run

SYMBOL = "BTCUSDT"
FREEZE = {"fault": "burst", "seconds": 600, "multiplier": 0}
"""A market that issues no more trades (the REST history stops growing, the clock goes on)."""


async def agg_trades(sim: Simulator, **params: int) -> tuple[int, Any]:
    """Status and decoded body of one aggTrades request for ``SYMBOL``."""
    status, _, body = await http_get(f"{sim.rest_base}/fapi/v1/aggTrades?{urlencode({'symbol': SYMBOL, **params})}")
    return status, body


async def page_from(sim: Simulator, from_id: int, limit: int) -> list[dict[str, Any]]:
    """Every trade from ``from_id`` on, page by page (``fromId`` = last id + 1), until an empty page."""
    trades: list[dict[str, Any]] = []
    while True:
        status, page = await agg_trades(sim, fromId=from_id, limit=limit)
        assert status == 200, page
        if not page:
            return trades
        trades += page
        from_id = page[-1]["a"] + 1


async def trade_accounting(sim: Simulator) -> dict[str, Any]:
    """The ``trades`` block of ``SYMBOL`` from ``GET /admin/accounting``."""
    _, _, accounting = await http_get(f"{sim.admin_base}/admin/accounting")
    return accounting["trades"][SYMBOL]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_from_id_paging_serves_every_issued_id_exactly_once_in_order_and_never_a_skipped_one() -> None:
    async def scenario() -> None:
        async with running_simulator(SimulatorConfig(symbols=(SYMBOL,), seed=3, rate=3.0)) as sim:
            await asyncio.sleep(0.3)
            await sim.apply_fault({"fault": "skip_agg_ids", "symbol": SYMBOL, "count": 4})
            await sim.apply_fault({"fault": "skip_agg_ids", "symbol": SYMBOL, "count": 3})  # adjacent: one range
            await asyncio.sleep(0.3)
            await admin_fault(sim.admin_base, {"fault": "skip_agg_ids", "symbol": SYMBOL, "count": 3})
            await asyncio.sleep(0.3)
            await sim.apply_fault(FREEZE)
            issued = await trade_accounting(sim)
            served = await page_from(sim, from_id=0, limit=37)
            rest = sim.accounting()["rest"]
        ids = [trade["a"] for trade in served]
        skipped = issued["skipped"]
        assert [last - first + 1 for first, last in skipped] == [7, 3]
        assert all(issued["first_id"] < first <= last < issued["last_id"] for first, last in skipped)
        never_issued = {i for first, last in skipped for i in range(first, last + 1)}
        expected = [i for i in range(issued["first_id"], issued["last_id"] + 1) if i not in never_issued]
        assert ids == expected, "fromId=0 starts at the oldest kept trade; pages continue without loss or overlap"
        assert len(ids) == issued["issued"] > 100
        assert issued["forgotten_below"] is None
        pages = -(-len(ids) // 37) + 1  # the pages with trades and the empty one
        assert rest["requests"] == pages and rest["weight_used"] == 20 * pages
        assert sum(rest["weight_by_minute"].values()) == 20 * pages, "paging may cross a clock minute"
        assert rest["max_weight_per_minute"] == max(rest["weight_by_minute"].values())

    run(scenario())


def test_only_the_last_agg_trade_history_trades_are_served_and_the_rest_is_reported_forgotten() -> None:
    async def scenario() -> None:
        async with running_simulator(SimulatorConfig(symbols=(SYMBOL,), seed=4, rate=3.0, agg_trade_history=50)) as sim:
            await asyncio.sleep(1.0)
            await sim.apply_fault(FREEZE)
            issued = await trade_accounting(sim)
            served = await page_from(sim, from_id=0, limit=1000)
        last = issued["last_id"]
        assert issued["issued"] > 120, "enough trades that the kept ones were cut off at least once"
        assert [trade["a"] for trade in served] == list(range(last - 49, last + 1))
        assert issued["forgotten_below"] == last - 49

    run(scenario())


def test_latest_trades_from_id_past_the_newest_limits_and_time_windows() -> None:
    async def scenario() -> None:
        async with running_simulator(SimulatorConfig(symbols=(SYMBOL,), seed=5, rate=3.0)) as sim:
            await asyncio.sleep(0.5)
            await sim.apply_fault(FREEZE)
            issued = await trade_accounting(sim)
            last = issued["last_id"]
            _, latest = await agg_trades(sim, limit=5)
            _, newest = await agg_trades(sim, fromId=last)
            _, beyond = await agg_trades(sim, fromId=last + 1)
            _, everything = await agg_trades(sim)
            middle_ms = everything[len(everything) // 2]["T"]
            _, from_time = await agg_trades(sim, startTime=middle_ms, limit=4)
            _, one_ms = await agg_trades(sim, startTime=middle_ms, endTime=middle_ms, limit=1000)
            _, until_time = await agg_trades(sim, endTime=middle_ms, limit=3)
            too_wide = await agg_trades(sim, startTime=middle_ms, endTime=middle_ms + 3_600_001)  # over an hour
            too_small = await agg_trades(sim, limit=0)
            too_large = await agg_trades(sim, limit=1001)
        assert [trade["a"] for trade in latest] == list(range(last - 4, last + 1))
        assert [trade["a"] for trade in newest] == [last] and beyond == []
        assert len(everything) == issued["issued"] < 500 and everything[-1]["a"] == last, "default limit 500"
        assert from_time == [trade for trade in everything if trade["T"] >= middle_ms][:4]
        assert one_ms == [trade for trade in everything if trade["T"] == middle_ms] != []
        assert until_time == [trade for trade in everything if trade["T"] <= middle_ms][-3:]
        assert too_wide == (400, {"code": -1127, "msg": "More than 1 hours between startTime and endTime."})
        assert too_small[0] == too_large[0] == 400 and too_small[1]["code"] == too_large[1]["code"] == -1130

    run(scenario())


def test_trades_older_than_the_horizon_are_no_longer_served_even_when_the_market_is_quiet() -> None:
    async def scenario() -> None:
        config = SimulatorConfig(symbols=(SYMBOL,), seed=6, rate=3.0, agg_trade_horizon_s=1.0)
        async with running_simulator(config) as sim:
            await asyncio.sleep(0.4)
            _, early = await agg_trades(sim, fromId=0, limit=1000)
            early_accounting = await trade_accounting(sim)
            await asyncio.sleep(1.0)
            before_ms = now_ms()
            _, later = await agg_trades(sim, fromId=0, limit=1000)
            after_ms = now_ms()
            _, from_first = await agg_trades(sim, fromId=early[0]["a"], limit=1)
            later_accounting = await trade_accounting(sim)
            await sim.apply_fault(FREEZE)
            frozen = await trade_accounting(sim)
            await asyncio.sleep(1.1)
            _, quiet_from_id = await agg_trades(sim, fromId=0)
            _, quiet_latest = await agg_trades(sim)
            quiet_accounting = await trade_accounting(sim)
        assert early[0]["a"] == early_accounting["first_id"] and early_accounting["forgotten_below"] is None

        oldest = later[0]["a"]
        served = {trade["a"] for trade in later}
        old = [trade["a"] for trade in early if trade["T"] < before_ms - 1000]
        young = [trade["a"] for trade in early if trade["T"] >= after_ms - 1000]
        assert old and not served & set(old), "trades older than the horizon are forgotten"
        assert set(young) <= served
        assert oldest > early[0]["a"] and all(trade["T"] >= before_ms - 1000 for trade in later)
        assert [trade["a"] for trade in later] == list(range(oldest, oldest + len(later)))
        assert from_first[0]["a"] >= oldest, "a fromId below the oldest kept trade starts at the oldest kept trade"
        assert oldest <= later_accounting["forgotten_below"] <= later_accounting["last_id"]

        assert quiet_from_id == [] and quiet_latest == [], "a quiet market forgets too, on the next answer"
        assert quiet_accounting["forgotten_below"] == frozen["last_id"] + 1
        assert quiet_accounting["issued"] == frozen["issued"] and quiet_accounting["skipped"] == []

    run(scenario())


def test_weight_per_minute_is_the_sum_of_the_charged_weights_and_keeps_the_last_60_minutes() -> None:
    async def scenario() -> None:
        async with running_simulator(SimulatorConfig(symbols=(SYMBOL,), weight_limit_per_minute=100)) as sim:
            clock = [1_800_000_010.0]  # 10 s into minute 30,000,000
            sim.rest.budget.clock = lambda: clock[0]
            base = sim.rest_base
            first_minute = [
                f"{base}/fapi/v1/depth?symbol={SYMBOL}&limit=5",  # 2
                f"{base}/fapi/v1/depth?symbol={SYMBOL}&limit=1000",  # 20
                f"{base}/fapi/v1/aggTrades?symbol={SYMBOL}",  # 20
                f"{base}/fapi/v1/exchangeInfo",  # 1
                f"{base}/fapi/v1/time",  # 1
                f"{base}/fapi/v1/aggTrades?symbol={SYMBOL}&limit=1",  # 20
                f"{base}/fapi/v1/aggTrades?symbol={SYMBOL}&limit=1",  # 20 -> 84
                f"{base}/fapi/v1/aggTrades?symbol={SYMBOL}&limit=1",  # 20 more would be 104: HTTP 429, not charged
            ]
            answers = [await http_get(url) for url in first_minute]
            clock[0] += 60  # the next minute
            await http_get(f"{base}/fapi/v1/depth?symbol={SYMBOL}&limit=100")  # 5
            await http_get(f"{base}/fapi/v1/ping")  # 1
            clock[0] += 59 * 60  # 60 minutes after the first: the first minute is no longer listed
            last_status, last_headers, _ = await http_get(f"{base}/fapi/v1/time")  # 1
            rest = sim.accounting()["rest"]
        assert [status for status, _, _ in answers] == [200] * 7 + [429]
        assert answers[6][1]["X-MBX-USED-WEIGHT-1M"] == "84"
        assert last_status == 200 and last_headers["X-MBX-USED-WEIGHT-1M"] == "1"
        assert rest["weight_used"] == 84 + 6 + 1
        assert rest["max_weight_per_minute"] == 84, "the maximum covers the whole run"
        assert rest["weight_by_minute"] == {"1800000060": 6, "1800003600": 1}
        assert rest["requests"] == 11 and rest["rejected"]["429"] == 1

    run(scenario())

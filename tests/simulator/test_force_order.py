"""``<sym>@forceOrder`` over a real socket: at most one liquidation per symbol per second, the latest of its second,
whose fills are ordinary trades on ``@trade``, and an accounting of the ones not reported."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from websockets.asyncio.client import connect

from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from tests.simulator.ws_clients import FROZEN_MARKET, collect, payloads, run

TICK = {"BTCUSDT": Decimal("0.10"), "ETHUSDT": Decimal("0.01")}
STREAMS = [f"{symbol}@{kind}" for symbol in ("btcusdt", "ethusdt") for kind in ("forceOrder", "trade")]


def fills_of(order: dict[str, Any], trades: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The consecutive trades at ``order``'s trade time and side that make up exactly its figures, if any."""
    taker_sold = order["S"] == "SELL"
    candidates = [trade for trade in trades if trade["T"] == order["T"] and trade["m"] == taker_sold]
    tick = TICK[order["s"]]
    for start in range(len(candidates)):
        for end in range(start + 1, len(candidates) + 1):
            fills = candidates[start:end]
            if [fill["t"] for fill in fills] != list(range(fills[0]["t"], fills[0]["t"] + len(fills))):
                break
            lots = sum(Decimal(fill["q"]) for fill in fills)
            notional = sum(Decimal(fill["p"]) * Decimal(fill["q"]) for fill in fills)
            prices = [Decimal(fill["p"]) for fill in fills]
            worst = min(prices) - tick if taker_sold else max(prices) + tick
            if (
                lots == Decimal(order["q"])
                and Decimal(order["l"]) == Decimal(fills[-1]["q"])
                and (notional / lots).quantize(tick, ROUND_HALF_EVEN) == Decimal(order["ap"])
                and worst == Decimal(order["p"])
            ):
                return fills
    return None


def test_at_most_one_liquidation_per_second_is_reported_and_its_fills_are_on_the_trade_stream() -> None:
    async def scenario() -> tuple[list[str], dict[str, Any]]:
        config = SimulatorConfig(
            symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"), seed=8, rate=2.0, liquidation_share=0.3, faults=(FROZEN_MARKET,)
        )
        async with (
            running_simulator(config) as sim,
            connect(f"{sim.ws_base}/market/stream?streams={'/'.join(STREAMS)}") as ws,
        ):
            await sim.apply_fault({"fault": "clear"})
            frames = await collect(ws, 3.2)
            await sim.apply_fault(FROZEN_MARKET)
            frames += await collect(ws, 1.3)  # the last liquidation goes out when its second ends
            return frames, sim.accounting()

    frames, accounting = run(scenario())
    for symbol in ("BTCUSDT", "ETHUSDT"):
        events = payloads(frames, f"{symbol.lower()}@forceOrder")
        trades = payloads(frames, f"{symbol.lower()}@trade")
        assert len(events) >= 3
        windows = [event["o"]["T"] // 1000 for event in events]
        assert windows == sorted(set(windows)), "at most one liquidation per second"
        for event in events:
            order = event["o"]
            assert list(event) == ["e", "E", "o"] and event["e"] == "forceOrder"
            assert list(order) == ["s", "S", "o", "f", "q", "p", "ap", "X", "l", "z", "T"]
            assert (order["s"], order["o"], order["f"], order["X"]) == (symbol, "LIMIT", "IOC", "FILLED")
            assert order["S"] in ("BUY", "SELL") and order["q"] == order["z"]
            assert order["T"] // 1000 < event["E"] // 1000, "reported once its second has ended"
            assert fills_of(order, trades) is not None, f"{order} has no matching fills on the trade stream"
        counts = accounting["liquidations"][symbol]
        assert counts["published"] == len(events) and counts["superseded"] > 2 * len(events)
        assert counts["orders"] == counts["superseded"] + counts["published"], "none without a subscriber, none pending"
        assert accounting["streams"][f"{symbol.lower()}@forceOrder"]["frames"] == len(events)
    unheard = accounting["liquidations"]["SOLUSDT"]
    assert unheard["orders"] > unheard["superseded"] and unheard["published"] == 0, "no subscriber, nothing published"

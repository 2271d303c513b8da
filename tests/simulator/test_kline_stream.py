"""``<sym>@kline_1m`` over a real socket, across a minute boundary of the exchange clock: every frame equals a
recomputation from the trade frames received before it, and each finished minute is closed exactly once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from websockets.asyncio.client import connect

from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from tests.simulator.ws_clients import FROZEN_MARKET, clock_offset_before, collect, payloads, run

MINUTE_MS = 60_000
SYMBOLS = {"btcusdt": (2, 3), "solusdt": (4, 2)}
"""Price and quantity decimals."""
STREAMS = [f"{symbol}@{kind}" for symbol in SYMBOLS for kind in ("trade", "kline_1m")]
KLINE_KEYS = ["t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q", "B"]


def decimals(text: str) -> int:
    return len(text.partition(".")[2])


def expected_kline(trades: list[dict[str, Any]], previous_close: str) -> dict[str, Any]:
    """The kline fields Binance derives from the trades of one minute (an empty minute stays at ``previous_close``)."""
    if not trades:
        return {"f": -1, "L": -1, "n": 0, "o": previous_close, "c": previous_close, "h": previous_close,
                "l": previous_close, "v": Decimal(0), "q": Decimal(0), "V": Decimal(0), "Q": Decimal(0)}  # fmt: skip
    prices = [Decimal(trade["p"]) for trade in trades]
    buys = [trade for trade in trades if not trade["m"]]
    return {
        "f": trades[0]["t"],
        "L": trades[-1]["t"],
        "n": len(trades),
        "o": trades[0]["p"],
        "c": trades[-1]["p"],
        "h": max(trades, key=lambda trade: Decimal(trade["p"]))["p"],
        "l": min(trades, key=lambda trade: Decimal(trade["p"]))["p"],
        "v": sum(Decimal(trade["q"]) for trade in trades),
        "q": sum(price * Decimal(trade["q"]) for price, trade in zip(prices, trades, strict=True)),
        "V": sum((Decimal(trade["q"]) for trade in buys), Decimal(0)),
        "Q": sum((Decimal(trade["p"]) * Decimal(trade["q"]) for trade in buys), Decimal(0)),
    }


def test_kline_frames_recompute_from_the_trades_and_each_finished_minute_closes_exactly_once() -> None:
    async def scenario() -> list[str]:
        config = SimulatorConfig(
            symbols=("BTCUSDT", "SOLUSDT"),
            seed=5,
            rate=2.0,
            faults=(FROZEN_MARKET,),
            clock_offset_ms=clock_offset_before(MINUTE_MS, lead_ms=2_000),
            publish_latency_ms=0,  # trade frames go out at their tick, before the kline that counts them
        )
        async with (
            running_simulator(config) as sim,
            connect(f"{sim.ws_base}/market/stream?streams={'/'.join(STREAMS)}") as ws,
        ):
            await sim.apply_fault({"fault": "clear"})
            return await collect(ws, 4.0)

    frames = run(scenario())
    for symbol, (price_decimals, qty_decimals) in SYMBOLS.items():
        trades_by_minute: dict[int, list[dict[str, Any]]] = {}
        closes: dict[int, str] = {}
        closed_minutes: list[int] = []
        updates = 0
        for frame in payloads(frames):
            if frame["s"] != symbol.upper():
                continue
            if frame["e"] == "trade":
                trades_by_minute.setdefault(frame["T"] // MINUTE_MS * MINUTE_MS, []).append(frame)
                continue
            kline = frame["k"]
            assert list(frame) == ["e", "E", "s", "k"] and list(kline) == KLINE_KEYS
            assert (frame["e"], kline["s"], kline["i"], kline["B"]) == ("kline", symbol.upper(), "1m", "0")
            assert kline["t"] % MINUTE_MS == 0 and kline["T"] == kline["t"] + MINUTE_MS - 1
            assert kline["t"] not in closed_minutes, "nothing of a minute after its closing frame"
            assert all(closed < kline["t"] for closed in closed_minutes)
            trades = trades_by_minute.get(kline["t"], [])
            expected = expected_kline(trades, closes.get(kline["t"] - MINUTE_MS, kline["o"]))
            actual = {key: Decimal(kline[key]) if key in "vqVQ" else kline[key] for key in expected}
            assert actual == expected, f"{symbol} kline {kline} vs trades {trades}"
            assert {decimals(kline[key]) for key in "ohlc"} == {price_decimals}
            if trades:
                assert decimals(kline["v"]) == qty_decimals and decimals(kline["q"]) == price_decimals + qty_decimals
            closes[kline["t"]] = kline["c"]
            if kline["x"]:
                assert frame["E"] > kline["T"]
                closed_minutes.append(kline["t"])
            else:
                assert kline["t"] <= frame["E"] <= kline["T"]
                updates += 1
        assert len(closed_minutes) == 1, "the minute boundary passed once during the test"
        first_minute = closed_minutes[0]
        assert trades_by_minute.get(first_minute) and trades_by_minute.get(first_minute + MINUTE_MS)
        assert updates >= 12, "an update every 250 ms"

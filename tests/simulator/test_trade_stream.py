"""``<sym>@trade`` over a real socket: Binance's layout, and every aggregated trade is exactly the sum of its trades."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from websockets.asyncio.client import connect

from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from tests.simulator.ws_clients import FROZEN_MARKET, collect, collect_then_unsubscribe, payloads, run

SYMBOLS = ("btcusdt", "adausdt")
STREAMS = [f"{symbol}@{kind}" for symbol in SYMBOLS for kind in ("aggTrade", "trade")]
QTY = {"btcusdt": re.compile(r"^\d+\.\d{3}$"), "adausdt": re.compile(r"^\d+$")}
STEP = {"btcusdt": Decimal("0.001"), "adausdt": Decimal("1")}


def test_every_agg_trade_is_the_sum_of_its_individual_trades_and_the_accounting_counts_what_arrived() -> None:
    async def scenario() -> tuple[list[str], dict[str, Any]]:
        config = SimulatorConfig(symbols=("BTCUSDT", "ADAUSDT"), seed=3, rate=3.0, faults=(FROZEN_MARKET,))
        async with (
            running_simulator(config) as sim,
            connect(f"{sim.ws_base}/market/stream?streams={'/'.join(STREAMS)}") as ws,
        ):
            await sim.apply_fault({"fault": "clear"})
            frames = await collect_then_unsubscribe(ws, 1.5, STREAMS)
            frames += await collect(ws, 0.2)
            return frames, sim.accounting()

    frames, accounting = run(scenario())
    for symbol in SYMBOLS:
        aggregates = payloads(frames, f"{symbol}@aggTrade")
        trades = payloads(frames, f"{symbol}@trade")
        assert len(aggregates) > 20 and len(trades) > len(aggregates)
        for trade in trades:
            assert list(trade) == ["e", "E", "T", "s", "t", "p", "q", "X", "m"]
            assert trade["e"] == "trade" and trade["s"] == symbol.upper() and trade["X"] == "MARKET"
            assert QTY[symbol].match(trade["q"]) and Decimal(trade["q"]) >= STEP[symbol]
            assert isinstance(trade["m"], bool) and isinstance(trade["t"], int) and trade["T"] <= trade["E"]
        by_id = {trade["t"]: trade for trade in trades}
        ids = [trade["t"] for trade in trades]
        assert ids == list(range(ids[0], ids[0] + len(ids))), "trade ids are consecutive, nothing missed"
        assert ids[0] == aggregates[0]["f"] and ids[-1] == aggregates[-1]["l"]
        for aggregate in aggregates:
            parts = [by_id[trade_id] for trade_id in range(aggregate["f"], aggregate["l"] + 1)]
            assert sum(Decimal(part["q"]) for part in parts) == Decimal(aggregate["q"])
            assert {(part["p"], part["m"], part["T"]) for part in parts} == {
                (aggregate["p"], aggregate["m"], aggregate["T"])
            }
            assert len(parts) <= Decimal(aggregate["q"]) / STEP[symbol], "never more trades than lots"
        assert sum(aggregate["l"] - aggregate["f"] + 1 for aggregate in aggregates) == len(trades)
        tally = accounting["streams"][f"{symbol}@trade"]
        assert (tally["frames"], tally["first_id"], tally["last_id"]) == (len(trades), ids[0], ids[-1])

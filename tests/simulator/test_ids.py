"""Exchange ids keep growing across simulator restarts, as on Binance, while a seed still fixes the market."""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import connect

from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from harvest_pipeline.simulator.ids import MAX_EVENTS_PER_TICK, first_ids_at
from harvest_pipeline.simulator.instruments import INSTRUMENTS
from harvest_pipeline.simulator.market import SymbolMarket
from tests.simulator.ws_clients import collect, payloads, run

STREAMS = ("btcusdt@aggTrade", "btcusdt@depth@100ms", "btcusdt@bookTicker")
ID_KEYS = {"aggTrade": ("a", "f", "l"), "depthUpdate": ("U", "u", "pu"), "bookTicker": ("u",)}


async def ids_of_one_run(seconds: float) -> dict[str, list[int]]:
    """Start a simulator (seed 1), collect ``seconds`` of the three streams of BTCUSDT, stop it; ids by key."""
    config = SimulatorConfig(symbols=("BTCUSDT",), seed=1, rate=3.0)
    async with (
        running_simulator(config) as sim,
        connect(f"{sim.ws_base}/market/stream?streams={STREAMS[0]}") as trades_ws,
        connect(f"{sim.ws_base}/public/stream?streams={STREAMS[1]}/{STREAMS[2]}") as book_ws,
    ):
        trades, book = await asyncio.gather(collect(trades_ws, seconds), collect(book_ws, seconds))
    ids: dict[str, list[int]] = {}
    for message in payloads(trades + book):
        for key in ID_KEYS[message["e"]]:
            ids.setdefault(f"{message['e']}.{key}", []).append(message[key])
    return ids


def test_a_restarted_simulator_sends_only_ids_above_those_of_the_previous_run() -> None:
    async def scenario() -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        return await ids_of_one_run(0.6), await ids_of_one_run(0.6)

    before, after = run(scenario())
    expected = {f"{kind}.{key}" for kind, keys in ID_KEYS.items() for key in keys}
    assert set(before) == set(after) == expected
    for key in expected:
        assert min(after[key]) > max(before[key]), key


def test_a_run_at_the_event_ceiling_stays_below_the_first_ids_of_a_start_3_ms_later() -> None:
    start_ms = 1_795_000_000_000
    later = first_ids_at(start_ms + 3)
    market = SymbolMarket(INSTRUMENTS["BTCUSDT"], seed=1, first_ids=first_ids_at(start_ms))
    trades, tops = market.step(MAX_EVENTS_PER_TICK)  # 3 ms hold at most 3 / 10 + 1 ticks
    diff = market.take_diff()
    assert trades and tops and diff is not None
    assert max(trade.agg_id for trade in trades) < later.agg_id
    assert max(trade.last_trade_id for trade in trades) < later.trade_id
    assert max(diff.last_update_id, tops[-1].update_id) < later.update_id


def test_ids_depend_on_the_start_time_but_prices_and_quantities_only_on_the_seed() -> None:
    def run_for(start_ms: int) -> tuple[list, list]:
        market = SymbolMarket(INSTRUMENTS["ETHUSDT"], seed=3, first_ids=first_ids_at(start_ms))
        trades, tops = market.step(5_000)
        return trades, tops

    early_trades, early_tops = run_for(1_795_000_000_000)
    late_trades, late_tops = run_for(1_795_000_060_000)
    assert [(t.price_ticks, t.lots, t.buyer_is_maker) for t in early_trades] == [
        (t.price_ticks, t.lots, t.buyer_is_maker) for t in late_trades
    ]
    assert [top[1:] for top in early_tops] == [top[1:] for top in late_tops]
    assert late_trades[0].agg_id - early_trades[0].agg_id == 60_000 * 5_000

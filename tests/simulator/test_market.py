"""The pure market model: trades consume the book, diffs rebuild it, a seed fixes the sequence."""

from __future__ import annotations

from harvest_pipeline.simulator.instruments import INSTRUMENTS, format_units
from harvest_pipeline.simulator.market import SymbolMarket


def test_prices_and_quantities_have_exactly_the_tick_and_step_decimals() -> None:
    btc, ada, xrp = INSTRUMENTS["BTCUSDT"], INSTRUMENTS["ADAUSDT"], INSTRUMENTS["XRPUSDT"]
    assert btc.price(btc.start_ticks) == "97000.00"
    assert btc.price(970_001) == "97000.10"
    assert btc.qty(12) == "0.012"
    assert ada.price(7000) == "0.70000"
    assert ada.qty(25) == "25"
    assert xrp.qty(3) == "0.3"
    assert format_units(0, 3) == "0.000"
    assert format_units(5, 3) == "0.005"


def test_every_trade_takes_the_best_opposite_level_and_the_book_shows_what_is_left() -> None:
    market = SymbolMarket(INSTRUMENTS["BTCUSDT"], seed=11)
    checked = 0
    for _ in range(20_000):
        asks, bids = dict(market.asks.lots), dict(market.bids.lots)
        trades, tops = market.step(1)
        for trade in trades:
            before = bids if trade.buyer_is_maker else asks
            after = market.bids.lots if trade.buyer_is_maker else market.asks.lots
            best_before = max(before) if trade.buyer_is_maker else min(before)
            assert trade.price_ticks == best_before, "a taker fills at the best opposite price first"
            assert trade.lots <= before[trade.price_ticks]
            left = before.pop(trade.price_ticks) - trade.lots
            assert after.get(trade.price_ticks, 0) == left
            if left:
                top = market.top()
                touch = (top.bid_ticks, top.bid_lots) if trade.buyer_is_maker else (top.ask_ticks, top.ask_lots)
                assert touch == (trade.price_ticks, left), "the touch shows what the trade left"
            checked += 1
        if tops:
            assert tops[-1] == market.top(), "bookTicker reports the book after the event"
            assert tops[-1].bid_ticks < tops[-1].ask_ticks, "the book never crosses"
    assert checked > 500


def test_depth_diffs_applied_to_the_initial_book_give_the_final_book_with_a_continuous_chain() -> None:
    market = SymbolMarket(INSTRUMENTS["ETHUSDT"], seed=5)
    bids, asks = dict(market.bids.lots), dict(market.asks.lots)
    previous = market.last_diff_update_id
    for _ in range(300):
        market.step(40)
        diff = market.take_diff()
        assert diff is not None
        assert diff.previous_update_id == previous
        assert diff.first_update_id == previous + 1
        assert diff.last_update_id - diff.first_update_id + 1 == 40
        previous = diff.last_update_id
        for side, changes in ((bids, diff.bids), (asks, diff.asks)):
            for tick, lots in changes:
                if lots:
                    side[tick] = lots
                else:
                    side.pop(tick, None)
    assert bids == market.bids.lots
    assert asks == market.asks.lots
    assert len(bids) > 60 and len(asks) > 60, "the book keeps many levels"


def test_the_same_seed_gives_the_same_events_and_another_seed_does_not() -> None:
    def run_events(seed: int) -> list[object]:
        market = SymbolMarket(INSTRUMENTS["SOLUSDT"], seed)
        out: list[object] = []
        for _ in range(200):
            out.extend(market.step(market.event_count(0.01, 5.0)))
            out.append(market.take_diff())
        return out

    assert run_events(3) == run_events(3)
    assert run_events(3) != run_events(4)


def test_rate_multiplier_scales_the_event_count() -> None:
    market = SymbolMarket(INSTRUMENTS["BTCUSDT"], seed=1)
    quiet = sum(market.event_count(0.01, 0.1) for _ in range(1000))
    busy = sum(market.event_count(0.01, 20.0) for _ in range(1000))
    assert busy > 150 * quiet > 0

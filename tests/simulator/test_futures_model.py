"""The pure parts behind the futures streams: individual trades, klines, liquidations, mark price and funding times."""

from __future__ import annotations

import argparse
import hashlib

import orjson
import pytest

from harvest_pipeline.simulator import SimulatorConfig, wire
from harvest_pipeline.simulator.command import config_from_args, register
from harvest_pipeline.simulator.derivatives import MAX_FUNDING_RATE_E8, MarkModel, OpenInterestModel, next_funding_ms
from harvest_pipeline.simulator.instruments import INSTRUMENTS, divide_half_even, format_units
from harvest_pipeline.simulator.klines import MINUTE_MS, KlineSeries
from harvest_pipeline.simulator.liquidations import LiquidationWindow, liquidation_of
from harvest_pipeline.simulator.market import LIQUIDATION_SHARE, ForcedOrder, SymbolMarket, Trade, trade_lots

BTC = INSTRUMENTS["BTCUSDT"]
MINUTE = 1_795_000_020_000  # a UTC minute boundary
SEEDED_SEQUENCE_SHA256 = "d8522c42d7be83d20c813e5f2c4a5fc246fc16267f4391cc3817f2fba294d012"
"""Prices, lots and sides of the trades and best bid/asks of BTCUSDT, seed 9, as the model issued them before the
individual trades and liquidations existed."""


def sequence_digest(market: SymbolMarket) -> tuple[int, str]:
    digest, trades = hashlib.sha256(), 0
    for _ in range(1000):
        new_trades, tops = market.step(market.event_count(0.01, 5.0))
        for trade in new_trades:
            digest.update(f"{trade.price_ticks},{trade.lots},{trade.buyer_is_maker};".encode())
            trades += 1
        for top in tops:
            digest.update(f"{top[1:]}".encode())
    return trades, digest.hexdigest()


def test_trade_ids_and_liquidations_leave_the_seeded_sequence_of_the_book_unchanged() -> None:
    assert sequence_digest(SymbolMarket(BTC, seed=9)) == (2457, SEEDED_SEQUENCE_SHA256)
    assert sequence_digest(SymbolMarket(BTC, seed=9, liquidation_share=0.5)) == (2457, SEEDED_SEQUENCE_SHA256)


def test_an_aggregated_trade_has_one_to_three_individual_trades_never_more_than_its_lots() -> None:
    market = SymbolMarket(INSTRUMENTS["ADAUSDT"], seed=4)
    trades = [trade for _ in range(3000) for trade in market.step(10)[0]]
    counts = [trade.last_trade_id - trade.first_trade_id + 1 for trade in trades]
    assert {1, 2, 3} <= set(counts)
    assert all(1 <= count <= min(3, trade.lots) for count, trade in zip(counts, trades, strict=True))
    assert any(trade.lots == 1 for trade in trades), "single-lot fills exist and got a single trade id"
    for previous, trade in zip(trades, trades[1:], strict=False):
        assert trade.first_trade_id == previous.last_trade_id + 1, "trade ids are consecutive"
    assert trade_lots(7, 3) == [3, 2, 2] and trade_lots(2, 2) == [1, 1] and trade_lots(5, 1) == [5]


def test_individual_trade_frames_split_the_aggregate_exactly() -> None:
    trade = Trade(agg_id=5, price_ticks=970_001, lots=8, first_trade_id=100, last_trade_id=102, buyer_is_maker=True)
    frames = wire.individual_trades(BTC, trade, 1_000, 999)
    assert [trade_id for trade_id, _ in frames] == [100, 101, 102]
    assert [orjson.loads(payload) for _, payload in frames][0] == {
        "e": "trade", "E": 1_000, "T": 999, "s": "BTCUSDT", "t": 100, "p": "97000.10", "q": "0.003", "X": "MARKET",
        "m": True,
    }  # fmt: skip
    assert [orjson.loads(payload)["q"] for _, payload in frames] == ["0.003", "0.003", "0.002"]


def trade(agg_id: int, ticks: int, lots: int, first: int, last: int, taker_sold: bool = False) -> Trade:
    return Trade(agg_id, ticks, lots, first, last, taker_sold)


def test_a_kline_sums_its_trades_and_a_minute_without_trades_repeats_the_previous_close() -> None:
    klines = KlineSeries(MINUTE + 12_345, start_ticks=970_000)
    klines.add([trade(1, 970_010, 3, 10, 11), trade(2, 970_000, 2, 12, 12, taker_sold=True)])
    klines.add([trade(3, 970_020, 1, 13, 13)])
    current = klines.current
    assert (current.open_ms, current.open, current.high, current.low, current.close) == (
        MINUTE, 970_010, 970_020, 970_000, 970_020
    )  # fmt: skip
    assert (current.lots, current.taker_buy_lots, current.first_id, current.last_id, current.count) == (6, 4, 10, 13, 4)
    assert current.tick_lots == 970_010 * 3 + 970_000 * 2 + 970_020
    first, empty = klines.close_minutes(MINUTE + 2 * MINUTE_MS + 5)
    assert first is current and klines.current.open_ms == MINUTE + 2 * MINUTE_MS
    assert (empty.open, empty.high, empty.low, empty.close, empty.count) == (970_020,) * 4 + (0,)
    frame = orjson.loads(wire.kline(BTC, empty, MINUTE + 2 * MINUTE_MS + 5, closed=True))
    assert frame["k"] == {
        "t": MINUTE + MINUTE_MS, "T": MINUTE + 2 * MINUTE_MS - 1, "s": "BTCUSDT", "i": "1m", "f": -1, "L": -1,
        "o": "97002.00", "c": "97002.00", "h": "97002.00", "l": "97002.00", "v": "0", "n": 0, "x": True, "q": "0",
        "V": "0", "Q": "0", "B": "0",
    }  # fmt: skip
    quote = orjson.loads(wire.kline(BTC, first, MINUTE + 5, closed=False))["k"]["q"]
    assert quote == format_units(current.tick_lots * 10, 5) == "582.00500", "0.10 * 0.001 per tick-lot, exact"


def test_the_day_statistics_cover_the_last_1440_minutes_or_since_start() -> None:
    klines = KlineSeries(MINUTE + 500, start_ticks=970_000)
    klines.add([trade(1, 970_100, 4, 1, 2)])
    klines.close_minutes(MINUTE + MINUTE_MS)
    klines.add([trade(2, 969_900, 2, 3, 3, taker_sold=True)])
    day = klines.day()
    assert (day.open_ms, day.open, day.high, day.low, day.last, day.last_lots) == (
        MINUTE + 500, 970_100, 970_100, 969_900, 969_900, 2
    )  # fmt: skip
    assert (day.lots, day.first_id, day.last_id, day.trade_count) == (6, 1, 3, 3)
    row = wire.ticker_24hr_row(BTC, day, MINUTE + MINUTE_MS + 1)
    assert row["priceChange"] == "-20.00" and row["priceChangePercent"] == "-0.021"
    assert row["weightedAvgPrice"] == "97003.33" and row["quoteVolume"] == "582.02000" and row["lastQty"] == "0.002"
    klines.close_minutes(MINUTE + 1440 * MINUTE_MS)  # the first minute leaves the window
    day = klines.day()
    assert (day.open_ms, day.open, day.lots, day.first_id, day.last_id, day.trade_count) == (
        MINUTE + MINUTE_MS, 969_900, 2, 3, 3, 1
    )  # fmt: skip


def test_a_liquidation_reports_its_fills_and_only_the_latest_of_each_second_is_published() -> None:
    fills = [trade(1, 970_000, 5, 10, 12, taker_sold=True), trade(2, 969_990, 3, 13, 14, taker_sold=True)]
    liquidation = liquidation_of(ForcedOrder(True, fills), 1_500)
    assert (liquidation.lots, liquidation.last_lots, liquidation.order_ticks) == (8, 1, 969_989)
    frame = orjson.loads(wire.force_order(BTC, liquidation, 2_003))
    assert frame == {
        "e": "forceOrder", "E": 2_003,
        "o": {"s": "BTCUSDT", "S": "SELL", "o": "LIMIT", "f": "IOC", "q": "0.008", "p": "96998.90",
              "ap": "96999.62", "X": "FILLED", "l": "0.001", "z": "0.008", "T": 1_500},
    }  # fmt: skip
    window = LiquidationWindow()
    window.record([ForcedOrder(True, fills)], 1_100)
    window.record([ForcedOrder(False, fills[:1]), ForcedOrder(True, fills[1:])], 1_990)
    assert window.take_due(1_999) is None, "the window is still open"
    due = window.take_due(2_000)
    assert due is not None and due.trade_ms == 1_990 and due.lots == 3
    assert window.take_due(3_000) is None
    assert window.to_json() == {"orders": 3, "superseded": 2, "published": 0}, "the owner counts what it published"


def test_averages_round_half_to_even() -> None:
    assert [divide_half_even(n, 2) for n in (1, 3, 5, -1)] == [0, 2, 2, 0]
    assert divide_half_even(2, 3) == 1 and divide_half_even(1, 3) == 0


def test_funding_times_are_00_08_16_utc_strictly_after_the_event() -> None:
    eight_hours = 8 * 3_600_000
    boundary = 1_795_046_400_000  # 2026-11-19T16:00:00Z
    assert boundary % eight_hours == 0
    assert next_funding_ms(boundary - 1) == boundary
    assert next_funding_ms(boundary) == boundary + eight_hours
    assert next_funding_ms(boundary + 1) == boundary + eight_hours


def test_mark_and_index_stay_near_the_mid_and_the_funding_rate_follows_the_premium() -> None:
    mid = BTC.start_ticks * BTC.e8_per_tick
    model = MarkModel(BTC, seed=1, mid_e8=mid, now_ms=0)
    values = [model.step(mid, second * 1000) for second in range(1, 3600)]
    assert all(abs(value.index_e8 - mid) < mid // 500 for value in values), "the basis stays within 0.2 %"
    index_spread = sum(abs(value.index_e8 - mid) for value in values)
    assert sum(abs(value.mark_e8 - mid) for value in values) < index_spread / 2, "the mark stays nearer the book"
    assert all(abs(value.funding_rate_e8) <= MAX_FUNDING_RATE_E8 for value in values)
    rates = {value.funding_rate_e8 for value in values}
    assert min(rates) < 10_000 < max(rates), "the rate moves around the interest rate"
    for value in values:
        premium = value.mark_e8 - value.index_e8
        assert abs(value.funding_rate_e8 - (premium / value.index_e8 / 3 * 1e8 + 10_000)) <= 1
    assert any(value.index_e8 % BTC.e8_per_tick for value in values), "index prices are not bound to the tick"


def test_open_interest_moves_only_with_traded_lots_besides_a_slow_pull_back() -> None:
    interest = OpenInterestModel(BTC, seed=1)
    start = interest.lots
    assert 5_000_000 <= start <= 15_000_000, "BTCUSDT starts between 5,000 and 15,000 BTC"
    traded = 0
    for _ in range(600):
        traded += 2_000
        interest.step(traded)
    assert interest.lots != start and abs(interest.lots - start) < 600 * 800


def test_liquidation_share_comes_from_the_command_line_and_must_be_a_share() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert config_from_args(parser.parse_args(["simulate", "--liquidation-share", "0.2"])).liquidation_share == 0.2
    assert config_from_args(parser.parse_args(["simulate"])).liquidation_share == LIQUIDATION_SHARE == 0.025
    with pytest.raises(ValueError, match="liquidation_share must be within 0..1"):
        SimulatorConfig(liquidation_share=1.5)

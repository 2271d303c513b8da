"""The SQL columns of features_1s on tiny hand-computed inputs (real Parquet files, real DuckDB)."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from harvest_pipeline.features.table import FeatureParams, build_features
from tests.features.rawdata import (
    DAY,
    SYMBOL,
    T0,
    write_events,
    write_liquidations,
    write_marks,
    write_open_interest,
    write_ticks,
    write_trades,
)
from tests.features.reference import reference_features


def recording_all_day(root) -> None:
    """A ledger saying a collector recorded the whole day: a connection opened the day before and still open at
    midnight, and a record in the day's last millisecond."""
    write_events(
        root, [{"event": "connect", "event_time_ms": T0 - 60_000}], day=DAY - dt.timedelta(days=1), symbol="ALL"
    )
    write_events(root, [{"event": "subscribed", "event_time_ms": T0 + 86_399_999}], part="part-end", symbol="ALL")


def features(root, day: dt.date = DAY, symbol: str = SYMBOL) -> dict[str, list]:
    return build_features(root, day, symbol, FeatureParams()).table.to_pydict()


def at(columns: dict[str, list], second: int, *names: str) -> tuple:
    return tuple(columns[name][second] for name in names)


def test_every_second_of_the_day_is_a_row_even_without_data(tmp_path):
    columns = features(tmp_path)
    assert len(columns["second_of_day"]) == 86_400
    assert columns["second_of_day"][-1] == 86_399
    assert columns["time_ms"][1] == T0 + 1000
    assert all(columns["is_empty"]) and all(columns["book_stale"])
    assert set(columns["close"]) == {None} and set(columns["cvd"]) == {0.0}


def test_ohlc_volumes_vwap_and_taker_sides_within_one_second(tmp_path):
    write_trades(
        tmp_path,
        [
            (T0 + 10_100, 1, "100", "2", False),  # taker buys 2 @ 100
            (T0 + 10_500, 2, "103", "1", True),  # taker sells 1 @ 103
            (T0 + 10_900, 3, "99", "1", False),  # taker buys 1 @ 99
        ],
    )
    c = features(tmp_path)
    assert at(c, 10, "open", "high", "low", "close") == (100.0, 103.0, 99.0, 99.0)
    assert at(c, 10, "volume", "quote_volume", "trade_count") == (4.0, 402.0, 3)
    assert c["vwap"][10] == pytest.approx(100.5)
    assert at(c, 10, "buy_volume", "sell_volume", "delta", "cvd") == (3.0, 1.0, 2.0, 2.0)
    assert c["is_empty"][10] is False


def test_empty_seconds_carry_close_and_are_flagged(tmp_path):
    recording_all_day(tmp_path)
    write_trades(tmp_path, [(T0 + 5_000, 1, "100", "1", False), (T0 + 8_000, 2, "101", "1", True)])
    c = features(tmp_path)
    assert c["close"][4] is None and c["is_empty"][4]
    assert at(c, 6, "open", "high", "low", "close", "vwap") == (None, None, None, 100.0, None)
    assert at(c, 6, "volume", "trade_count", "delta", "cvd", "is_empty") == (0.0, 0, 0.0, 1.0, True)
    assert at(c, 8, "close", "cvd", "is_empty") == (101.0, 0.0, False)
    assert at(c, 86_399, "close", "cvd", "is_empty") == (101.0, 0.0, True)


def test_cvd_resets_at_midnight_utc(tmp_path):
    next_day = DAY + dt.timedelta(days=1)
    write_trades(tmp_path, [(T0 + 1_000, 1, "100", "5", False), (T0 + 86_399_900, 2, "100", "2", False)])
    write_trades(tmp_path, [(T0 + 86_400_000 + 3_000, 3, "100", "1", True)], day=next_day)
    first, second = features(tmp_path), features(tmp_path, next_day)
    assert first["cvd"][86_399] == 7.0
    assert second["cvd"][0] == 0.0 and second["cvd"][3] == -1.0 and second["cvd"][86_399] == -1.0


def test_duplicate_trades_across_parts_count_once(tmp_path):
    trade = (T0 + 2_000, 7, "100", "1", False)
    write_trades(tmp_path, [trade], part="part-a")
    write_trades(tmp_path, [trade, (T0 + 2_500, 8, "100", "1", True)], part="part-b")
    c = features(tmp_path)
    assert at(c, 2, "trade_count", "buy_volume", "sell_volume") == (2, 1.0, 1.0)


def test_l1_columns_are_the_state_at_the_end_of_the_second_and_carry_forward(tmp_path):
    recording_all_day(tmp_path)
    write_ticks(tmp_path, [(T0 + 3_100, 1, "99", "1", "101", "1"), (T0 + 3_900, 2, "100", "3", "101", "1")])
    c = features(tmp_path)
    assert at(c, 3, "best_bid", "best_ask", "bid_size", "ask_size", "book_updates") == (100.0, 101.0, 3.0, 1.0, 2)
    assert c["mid"][3] == 100.5
    assert c["spread_bps"][3] == pytest.approx(1 / 100.5 * 1e4)
    assert c["microprice"][3] == pytest.approx((100 * 1 + 101 * 3) / 4)  # (b*A + a*B) / (A + B)
    assert c["imbalance_l1"][3] == pytest.approx((3 - 1) / 4)
    assert at(c, 50, "best_bid", "mid", "book_updates", "ofi") == (100.0, 100.5, 0, 0.0)
    assert c["best_bid"][2] is None


def test_book_goes_stale_after_more_than_five_seconds_without_an_update(tmp_path):
    recording_all_day(tmp_path)
    write_ticks(tmp_path, [(T0 + 100_200, 1, "99", "1", "101", "1")])
    c = features(tmp_path)
    # at the end of second 104, 4.8 s have passed since the update; at the end of 105, 5.8 s
    assert [c["book_stale"][s] for s in (99, 100, 104, 105)] == [True, False, False, True]


# (previous L1, next L1, expected OFI of the second holding the next update); L1 = (bid, bid_qty, ask, ask_qty)
OFI_CASES = {
    "bid up: +B_n": (("100", "2", "101", "4"), ("100.5", "3", "101", "4"), 3.0),
    "bid unchanged: B_n - B_prev": (("100", "2", "101", "4"), ("100", "5", "101", "4"), 3.0),
    "bid down: -B_prev": (("100", "2", "101", "4"), ("99.5", "7", "101", "4"), -2.0),
    "ask down: -A_n": (("100", "2", "101", "4"), ("100", "2", "100.5", "6"), -6.0),
    "ask unchanged: A_prev - A_n": (("100", "2", "101", "4"), ("100", "2", "101", "1"), 3.0),
    "ask up: +A_prev": (("100", "2", "101", "4"), ("100", "2", "101.5", "9"), 4.0),
    "both move: bid up and ask up": (("100", "2", "101", "4"), ("100.5", "1", "101.5", "3"), 1.0 + 4.0),
}


@pytest.mark.parametrize("previous, following, expected", OFI_CASES.values(), ids=OFI_CASES.keys())
def test_ofi_sign_conventions(tmp_path, previous, following, expected):
    write_ticks(tmp_path, [(T0 + 20_000, 1, *previous), (T0 + 21_000, 2, *following)])
    c = features(tmp_path)
    assert c["ofi"][20] == 0.0  # the day's first update has no predecessor
    assert c["ofi"][21] == expected


def test_ofi_sums_updates_within_a_second_in_update_id_order(tmp_path):
    write_ticks(
        tmp_path,
        [
            (T0 + 30_000, 1, "100", "2", "101", "4"),
            (T0 + 31_200, 3, "100", "1", "101", "4"),  # bid size 5 -> 1: -4 (listed first, applied second)
            (T0 + 31_100, 2, "100", "5", "101", "4"),  # bid size 2 -> 5: +3
        ],
    )
    assert features(tmp_path)["ofi"][31] == -1.0


def test_latency_percentiles_per_second_cover_trades_and_book_updates(tmp_path):
    write_trades(
        tmp_path, [(T0 + 40_000 + i, i + 1, "100", "1", False, latency) for i, latency in enumerate([1, 2, 3])]
    )
    write_ticks(tmp_path, [(T0 + 40_500, 1, "99", "1", "101", "1", 10)])
    c = features(tmp_path)
    assert c["latency_ms_p50"][40] == 2.5
    assert c["latency_ms_p99"][40] == pytest.approx(3 + 0.97 * 7)  # linear interpolation between 3 and 10
    assert c["latency_ms_p50"][41] is None


def test_gap_flags_cover_ledger_windows_including_disconnects_and_connection_wide_records(tmp_path):
    write_events(
        tmp_path,
        [
            {"event": "gap", "event_time_ms": T0 + 70_000, "from_time_ms": T0 + 60_500, "to_time_ms": T0 + 62_100},
            {"event": "connect", "event_time_ms": T0 + 1_000},
        ],
    )
    write_events(
        tmp_path,
        [
            {"event": "disconnect", "event_time_ms": T0 + 80_000, "reason": "server closed"},
            {"event": "connect", "event_time_ms": T0 + 82_500},
        ],
        symbol="ALL",
    )
    write_events(
        tmp_path,
        [{"event": "write_loss", "event_time_ms": T0 - 10, "from_time_ms": T0 - 5_000, "to_time_ms": T0 + 500}],
        day=DAY - dt.timedelta(days=1),
    )
    feature_day = build_features(tmp_path, DAY, SYMBOL, FeatureParams())
    gap = feature_day.table.column("gap").to_pylist()
    assert [s for s, flagged in enumerate(gap) if flagged] == [0, 60, 61, 62, 80, 81, 82]
    assert [(g["event"], g["from_ms"] - T0, g["to_ms"] - T0) for g in feature_day.gaps] == [
        ("write_loss", -5_000, 500),
        ("gap", 60_500, 62_100),
        ("disconnect", 80_000, 82_500),
    ]


def test_floats_everywhere_and_no_nan_in_sums(tmp_path):
    write_trades(tmp_path, [(T0 + 1_000, 1, "0.00000001", "0.00000001", False)])
    c = features(tmp_path)
    assert c["quote_volume"][1] == pytest.approx(1e-16)
    assert not any(math.isnan(v) for v in c["cvd"])


def test_mark_basis_funding_and_open_interest_are_the_latest_at_the_second_end_and_carry_while_recorded(tmp_path):
    recording_all_day(tmp_path)
    write_marks(tmp_path, [(T0 + 2_000, "101", "100", "0.0001"), (T0 + 2_999, "102", "100", "-0.0002")])
    write_marks(tmp_path, [(T0 + 2_999, "102", "100", "-0.0002"), (T0 + 9_500, "99.5", "100", "0")], part="part-b")
    write_open_interest(tmp_path, [(T0 + 4_250, "1500.5")])
    c = features(tmp_path)
    assert at(c, 1, "mark_price", "index_price", "basis_bps", "funding_rate") == (None, None, None, None)
    assert at(c, 2, "mark_price", "index_price", "funding_rate") == (102.0, 100.0, -0.0002)
    assert c["basis_bps"][2] == pytest.approx(200.0)
    assert at(c, 8, "mark_price", "funding_rate") == (102.0, -0.0002)  # carried
    assert c["basis_bps"][9] == pytest.approx(-50.0)
    assert at(c, 3, "open_interest", "open_interest_age_s") == (None, None)
    assert at(c, 4, "open_interest", "open_interest_age_s") == (1500.5, 0.75)
    assert at(c, 64, "open_interest", "open_interest_age_s") == (1500.5, 60.75)


def test_nothing_is_carried_into_a_second_no_collector_recorded(tmp_path):
    write_marks(tmp_path, [(T0 + 2_000, "101", "100", "0.0001")])
    write_open_interest(tmp_path, [(T0 + 2_100, "7")])
    write_events(tmp_path, [{"event": "disconnect", "event_time_ms": T0 + 2_500, "reason": "test"}], symbol="ALL")
    write_events(tmp_path, [{"event": "connect", "event_time_ms": T0 + 10_000}], part="part-b", symbol="ALL")
    c = features(tmp_path)
    assert at(c, 2, "mark_price", "open_interest") == (101.0, 7.0)
    assert at(c, 5, "recorded", "mark_price", "open_interest", "open_interest_age_s") == (False, None, None, None)


def test_liquidated_quantity_counts_per_side_in_the_second_of_its_trade_time(tmp_path):
    write_liquidations(
        tmp_path,
        [
            (T0 + 5_001, T0 + 4_999, "SELL", "0.5"),
            (T0 + 5_900, T0 + 5_800, "SELL", "1.25"),
            (T0 + 6_100, T0 + 6_000, "BUY", "2"),
        ],
    )
    write_liquidations(tmp_path, [(T0 + 5_900, T0 + 5_800, "SELL", "1.25")], part="part-b")  # the same event again
    c = features(tmp_path)
    assert at(c, 4, "liquidation_buy_volume", "liquidation_sell_volume") == (0.0, 0.5)
    assert at(c, 5, "liquidation_buy_volume", "liquidation_sell_volume") == (0.0, 1.25)
    assert at(c, 6, "liquidation_buy_volume", "liquidation_sell_volume") == (2.0, 0.0)
    assert at(c, 7, "liquidation_buy_volume", "liquidation_sell_volume") == (0.0, 0.0)


def test_derivatives_columns_match_the_plain_reference(tmp_path):
    recording_all_day(tmp_path)
    write_marks(
        tmp_path, [(T0 + s * 1000 + 3, f"{100 + s % 7}.125", f"{100 + s % 5}", f"0.000{s % 9}") for s in range(400)]
    )
    write_open_interest(tmp_path, [(T0 + s * 60_000 + 17, f"{1000 + s}.5") for s in range(8)])
    write_liquidations(
        tmp_path, [(T0 + s * 7_000 + 9, T0 + s * 7_000, "BUY" if s % 2 else "SELL", f"0.{s + 1}") for s in range(50)]
    )
    c = build_features(tmp_path, DAY, SYMBOL, FeatureParams()).table.to_pylist()
    ledgers = sorted(tmp_path.glob("date=*/symbol=*/kind=events"))
    reference = reference_features(tmp_path / f"date={DAY}" / f"symbol={SYMBOL}", ledgers, T0)
    names = ("mark_price", "index_price", "basis_bps", "funding_rate", "liquidation_buy_volume")
    names += ("liquidation_sell_volume", "open_interest", "open_interest_age_s")
    for ours, theirs in zip(c, reference, strict=True):
        for name in names:
            expected = theirs[name] if theirs[name] is None else pytest.approx(theirs[name], rel=1e-12)
            assert ours[name] == expected, (ours["second_of_day"], name)

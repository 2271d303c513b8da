"""The replay rules on hand-made diffs: synchronisation from a snapshot, ``pu`` breaks, carrying over midnight, second
and minute ends, level-wise OFI, crossed books, bookTicker agreement."""

from __future__ import annotations

import numpy as np
import pytest

from harvest_pipeline.book.inputs import CarriedBook, DayInputs, NextDayStart, TickerColumns
from harvest_pipeline.book.replay import MS_PER_DAY, level_ofi, replay_day
from harvest_pipeline.book.tables import checkpoint_table, seconds_table, validity_table
from tests.book.diffs import DAY_START, diff_columns, scaled, side_columns, snapshot

SNAP = snapshot(100, bids=[(10.0, 1.0), (9.9, 2.0), (9.8, 3.0)], asks=[(10.1, 1.5), (10.2, 2.5)])


def day(diffs, snapshots=(SNAP,), carried=None, next_day=None, tickers=None) -> DayInputs:
    return DayInputs(
        DAY_START, diff_columns(diffs), list(snapshots), carried, next_day, tickers or TickerColumns.empty()
    )


def top(replay, second: int, side: str = "bid_prices") -> list[float] | None:
    table = seconds_table(replay.recorder)
    values = table.column(side)[second].as_py()
    return None if values is None else [float(v) for v in values]


def test_diffs_older_than_the_snapshot_are_dropped_and_the_first_applied_one_straddles_it():
    replay = replay_day(
        day(
            [
                (100, 90, 95, 89, [(10.0, 7.0)], []),  # u < L: dropped
                (200, 96, 104, 95, [(10.0, 0.0)], [(10.15, 4.0)]),  # U <= L <= u: first applied
                (1300, 105, 110, 104, [(9.95, 1.0)], []),
            ]
        )
    )

    [interval] = replay.intervals
    assert (interval.from_ms, interval.start, interval.snapshot_update_id) == (DAY_START + 200, "snapshot", 100)
    assert (interval.first_update_id, interval.last_update_id, interval.diffs) == (104, 110, 2)
    assert (interval.end, interval.to_ms) == ("end_of_data", DAY_START + 1301)
    assert replay.recorder.valid[:3] == [True, False, False], "second 1 ends after the last diff: unknown"
    assert top(replay, 0) == [9.9, 9.8] and top(replay, 0, "ask_prices") == [10.1, 10.15, 10.2]
    assert top(replay, 1) is None


def test_a_live_stream_may_start_at_the_diff_whose_pu_is_the_snapshot():
    replay = replay_day(day([(100, 101, 105, 100, [(10.0, 5.0)], [])]))
    [interval] = replay.intervals
    assert interval.snapshot_update_id == 100 and interval.last_update_id == 105


def test_a_pu_break_ends_the_interval_and_the_next_fitting_snapshot_starts_another():
    later = snapshot(300, bids=[(11.0, 1.0)], asks=[(11.1, 1.0)])
    replay = replay_day(
        day(
            [
                (100, 101, 105, 100, [], []),
                (2100, 106, 110, 105, [], []),
                (4100, 120, 130, 119, [(10.0, 2.0)], []),  # pu 119 != 110: break
                (5100, 131, 290, 130, [], []),  # no snapshot fits
                (6100, 291, 310, 290, [(10.9, 1.0)], []),  # U <= 300 <= u
                (7100, 311, 320, 310, [], []),
            ],
            snapshots=(SNAP, later),
        )
    )

    first, second = replay.intervals
    assert (first.to_ms, first.end, first.break_after_id, first.break_pu) == (DAY_START + 4100, "break", 110, 119)
    assert (second.from_ms, second.snapshot_update_id, second.first_update_id) == (DAY_START + 6100, 300, 310)
    valid = replay.recorder.valid
    assert valid[:4] == [True, True, True, True] and valid[4:6] == [False, False] and valid[6:8] == [True, False]
    assert top(replay, 6) == [11.0, 10.9]
    assert replay.stats.applied == 4 and replay.stats.diffs == 6


def test_the_day_before_carries_its_book_into_a_chain_that_continues_past_midnight():
    carried = CarriedBook(500, DAY_START - 50, side_columns([(10.0, 1.0)]), side_columns([(10.1, 1.0)]))
    replay = replay_day(
        day(
            [(100, 501, 510, 500, [(10.0, 2.0)], []), (MS_PER_DAY - 10, 511, 520, 510, [], [(10.1, 0.5)])],
            snapshots=(),
            carried=carried,
            next_day=NextDayStart(520, DAY_START + MS_PER_DAY + 20, 0),
        )
    )

    [interval] = replay.intervals
    assert (interval.from_ms, interval.start, interval.to_ms, interval.end) == (
        DAY_START,
        "carried",
        DAY_START + MS_PER_DAY,
        "continues",
    )
    assert all(replay.recorder.valid) and len(replay.recorder.valid) == 86_400
    checkpoints = checkpoint_table(replay.recorder)
    assert checkpoints.num_rows == 1440
    last = checkpoints.slice(1439).to_pylist()[0]
    assert last["time_ms"] == DAY_START + MS_PER_DAY and last["last_update_id"] == 520
    assert [(float(level["price"]), float(level["qty"])) for level in last["asks"]] == [(10.1, 0.5)]
    assert last["last_event_time_ms"] == DAY_START + MS_PER_DAY - 10


def test_a_next_day_that_breaks_the_chain_ends_the_interval_at_midnight_as_a_break():
    replay = replay_day(day([(100, 101, 105, 100, [], [])], next_day=NextDayStart(999, DAY_START + MS_PER_DAY, 0)))
    [interval] = replay.intervals
    assert (interval.to_ms, interval.end, interval.break_after_id, interval.break_pu) == (
        DAY_START + MS_PER_DAY,
        "break",
        105,
        999,
    )


def test_a_carried_book_the_first_diff_does_not_continue_is_not_used():
    carried = CarriedBook(400, None, side_columns([(10.0, 1.0)]), side_columns([(10.1, 1.0)]))
    replay = replay_day(day([(100, 101, 105, 100, [], [])], carried=carried))
    carried_interval, from_snapshot = replay.intervals
    assert (carried_interval.from_ms, carried_interval.to_ms, carried_interval.end) == (
        DAY_START,
        DAY_START + 100,
        "break",
    )
    assert carried_interval.diffs == 0 and from_snapshot.start == "snapshot"


def test_level_ofi_follows_cont_kukanov_stoikov_on_each_level():
    before = (([100, 99], [5, 6]), ([101, 102], [7, 8]))
    # level 1: bid price up (+B1 new = 4), ask same (−A1 new + A1 old = −3 + 7); level 2: bid same (9 − 6), ask up
    # (+A2 old = 8).
    after = (([101, 99], [4, 9]), ([101, 103], [3, 2]))
    assert level_ofi(before, after) == [4 - 3 + 7, 9 - 6 + 8, 0, 0, 0]


def test_each_second_sums_the_level_ofi_of_its_diffs_except_the_first_of_a_book():
    replay = replay_day(
        day(
            [
                (100, 101, 105, 100, [(10.0, 2.0)], []),  # first of the book: no OFI
                (200, 106, 110, 105, [(10.0, 3.0)], []),  # bid 1 same price, 2 -> 3: +1
                (300, 111, 115, 110, [], [(10.1, 0.5)]),  # ask 1 same price 1.5 -> 0.5: +1
                (1100, 116, 120, 115, [], []),
            ]
        )
    )
    table = seconds_table(replay.recorder)
    assert table.column("ofi_levels")[0].as_py() == [2.0, 0.0, 0.0, 0.0, 0.0]
    assert table.column("diffs").to_pylist()[:3] == [3, 1, 0]
    assert table.column("ofi_levels")[1].as_py() is None, "second 1 ends after the last diff"


def test_a_crossed_book_inside_a_valid_interval_is_counted():
    replay = replay_day(day([(100, 101, 105, 100, [(10.1, 1.0)], [])]))
    assert replay.stats.crossed == 1
    assert replay.stats.crossed_examples[0]["bid"] == scaled(10.1)


def test_bookticker_is_compared_at_the_last_ticker_id_inside_each_diff_window():
    def ticker(update_id, bid, bid_qty, ask, ask_qty):
        return update_id, scaled(bid), scaled(bid_qty), scaled(ask), scaled(ask_qty)

    rows = [
        ticker(102, 10.0, 9.0, 10.1, 1.5),  # superseded inside the same window
        ticker(104, 10.0, 2.0, 10.1, 1.5),  # the top after diff 101..105: agrees
        ticker(108, 10.0, 2.0, 10.1, 9.9),  # diff 106..110 leaves ask 1.5: disagrees
        ticker(113, 10.0, 2.0, 10.1, 1.5),  # the last window: no ticker after it, so not judged
    ]
    columns = [np.array(column, dtype=np.int64) for column in zip(*rows, strict=True)]
    replay = replay_day(
        day(
            [(100, 101, 105, 100, [(10.0, 2.0)], []), (200, 106, 110, 105, [], []), (300, 111, 115, 110, [], [])],
            tickers=TickerColumns(*columns),
        )
    )
    assert (replay.stats.ticker_compared, replay.stats.ticker_agreed) == (2, 1)
    assert replay.stats.ticker_disagreements[0]["ticker_update_id"] == 108


def test_the_last_ticker_window_is_not_judged_when_its_tickers_may_have_been_cut_off():
    """Recording ended after the diff 106..110 arrived but before the ticker 109 that reported its final top: the
    earlier ticker 107 must not count as a disagreement; with 112 recorded after it, the same data disagrees."""

    def replay_with(tickers):
        columns = [np.array(column, dtype=np.int64) for column in zip(*tickers, strict=True)]
        diffs = [(100, 101, 105, 100, [(10.0, 2.0)], [(10.1, 1.5)]), (200, 106, 110, 105, [(10.0, 3.0)], [])]
        return replay_day(day(diffs, tickers=TickerColumns(*columns))).stats

    agreeing = (104, scaled(10.0), scaled(2.0), scaled(10.1), scaled(1.5))
    stale = (107, scaled(10.0), scaled(2.0), scaled(10.1), scaled(1.5))
    later = (112, scaled(10.0), scaled(3.0), scaled(10.1), scaled(1.5))
    cut_off = replay_with([agreeing, stale])
    assert (cut_off.ticker_compared, cut_off.ticker_agreed) == (1, 1)
    continued = replay_with([agreeing, stale, later])
    assert (continued.ticker_compared, continued.ticker_agreed) == (2, 1)


@pytest.mark.parametrize("diffs", [[], [(100, 1, 5, 0, [], [])]])
def test_a_day_without_a_usable_diff_is_86400_invalid_seconds(diffs):
    replay = replay_day(day(diffs, snapshots=()))
    assert replay.intervals == [] and not any(replay.recorder.valid)
    assert seconds_table(replay.recorder).num_rows == 86_400 and validity_table(replay.intervals).num_rows == 0
    assert checkpoint_table(replay.recorder).column("bids").null_count == 1440

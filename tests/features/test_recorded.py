"""``recorded``: which seconds a collector was recording, and no carry-forward of close or book into the others.

Tiny hand-made ledgers and raw rows (real Parquet, real DuckDB); T0 is 00:00 UTC of the day under test.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from harvest_pipeline.features.quality import empty_minute_rate
from harvest_pipeline.features.table import FeatureParams, build_features
from harvest_pipeline.store import kind_dir
from tests.features.rawdata import DAY, SYMBOL, T0, write_events, write_ticks, write_trades
from tests.features.reference import reference_features
from tests.features.synthetic import write_synthetic_day
from tests.features.test_dagster_assets import assert_matches_reference

PREVIOUS_DAY = DAY - dt.timedelta(days=1)


def features(root) -> dict[str, list]:
    return build_features(root, DAY, SYMBOL, FeatureParams()).table.to_pydict()


def seconds_not_recorded(columns: dict[str, list], first: int, last: int) -> list[int]:
    return [s for s in range(first, last + 1) if not columns["recorded"][s]]


def connected_since_yesterday(root) -> None:
    """Connection c1 opened the day before and was still open at midnight."""
    write_events(root, [{"event": "connect", "event_time_ms": T0 - 3_600_000}], day=PREVIOUS_DAY, symbol="ALL")


def last_record_at_end_of_day(root, conn_id: str = "c1") -> None:
    write_events(
        root, [{"event": "subscribed", "event_time_ms": T0 + 86_399_999, "conn_id": conn_id}], part="end", symbol="ALL"
    )


def test_seconds_before_the_first_and_after_the_last_record_are_not_recorded_and_carry_nothing(tmp_path):
    write_trades(tmp_path, [(T0 + 10_000, 1, "100", "1", False), (T0 + 20_500, 2, "101", "1", True)])
    c = features(tmp_path)
    assert seconds_not_recorded(c, 0, 86_399) == [*range(10), *range(21, 86_400)]
    assert [c["close"][s] for s in (9, 10, 15, 20, 21, 86_399)] == [None, 100.0, 100.0, 101.0, None, None]
    assert [c["cvd"][s] for s in (9, 15, 21)] == [0.0, 1.0, 0.0], "cvd is a running sum, recorded or not"
    assert c["is_empty"][21] and c["book_stale"][21]


def test_a_disconnect_leaves_the_seconds_wholly_inside_it_unrecorded_without_close_or_book(tmp_path):
    connected_since_yesterday(tmp_path)
    write_events(
        tmp_path,
        [
            {"event": "disconnect", "event_time_ms": T0 + 30_500, "reason": "server closed", "conn_id": "c1"},
            {"event": "connect", "event_time_ms": T0 + 33_200, "conn_id": "c2"},
        ],
        symbol="ALL",
    )
    last_record_at_end_of_day(tmp_path, "c2")
    write_trades(tmp_path, [(T0 + 29_500, 1, "100", "1", False), (T0 + 35_000, 2, "102", "1", False)])
    write_ticks(tmp_path, [(T0 + 29_000, 1, "99", "1", "101", "2"), (T0 + 34_100, 2, "101", "1", "103", "2")])
    c = features(tmp_path)
    assert seconds_not_recorded(c, 0, 86_399) == [31, 32], "30 and 33 are recorded in part"
    assert [s for s in range(28, 37) if c["gap"][s]] == [30, 31, 32, 33]
    assert [c["close"][s] for s in range(29, 37)] == [100.0, 100.0, None, None, None, None, 102.0, 102.0]
    assert [c["best_bid"][s] for s in range(29, 36)] == [99.0, 99.0, None, None, None, 101.0, 101.0]
    assert [c["mid"][s] for s in (30, 31, 33, 34)] == [100.0, None, None, 102.0]
    assert [c["book_stale"][s] for s in (30, 31, 33, 34)] == [False, True, True, False]
    assert c["close"][86_399] == 102.0 and c["recorded"][86_399]


def test_a_replaced_connection_opens_no_gap_and_no_unrecorded_window(tmp_path):
    connected_since_yesterday(tmp_path)
    write_events(
        tmp_path,
        [
            {"event": "connect", "event_time_ms": T0 + 40_000, "conn_id": "c2"},
            {"event": "disconnect", "event_time_ms": T0 + 50_000, "reason": "replaced: lifetime rotation"},
        ],
        symbol="ALL",
    )
    last_record_at_end_of_day(tmp_path, "c2")
    write_trades(tmp_path, [(T0 + 5_000, 1, "100", "1", False)])
    feature_day = build_features(tmp_path, DAY, SYMBOL, FeatureParams())
    c = feature_day.table.to_pydict()
    assert all(c["recorded"]) and not any(c["gap"]) and feature_day.gaps == []
    assert c["close"][4] is None and c["close"][5] == c["close"][86_399] == 100.0


def test_collector_down_windows_are_merged_before_judging_each_second(tmp_path):
    connected_since_yesterday(tmp_path)
    down = {"event": "gap", "event_time_ms": T0 + 55_100, "to_time_ms": T0 + 55_100, "conn_id": "c9"}
    write_events(
        tmp_path,
        [
            {**down, "stream": "btcusdt@aggTrade", "reason": "collector down (crash)", "from_time_ms": T0 + 50_300},
            {**down, "stream": "btcusdt@bookTicker", "reason": "collector down (crash)", "from_time_ms": T0 + 50_200},
            {"event": "gap", "event_time_ms": T0 + 57_500, "stream": "btcusdt@aggTrade", "reason": "ids missed",
             "from_time_ms": T0 + 56_000, "to_time_ms": T0 + 57_500},
            {"event": "gap", "event_time_ms": T0 + 60_400, "reason": "collector down (restart)",
             "from_time_ms": T0 + 59_000, "to_time_ms": T0 + 60_400},
            {"event": "disconnect", "event_time_ms": T0 + 60_300, "reason": "server closed", "conn_id": "c9"},
            {"event": "connect", "event_time_ms": T0 + 61_000, "conn_id": "c10"},
        ],
    )  # fmt: skip
    last_record_at_end_of_day(tmp_path, "c10")
    write_trades(tmp_path, [(T0 + 70_000, 1, "100", "1", False, 5, T0 + 59_500)])  # T inside the window, E after it
    c = features(tmp_path)
    assert seconds_not_recorded(c, 0, 86_399) == [51, 52, 53, 54, 60], "59 holds a trade: data proves recording"
    assert all(c["gap"][s] for s in (56, 57)), "a gap in the ids is a feed gap, not time without a collector"
    assert c["trade_count"][59] == 1 and c["close"][59] == 100.0 and c["close"][60] is None


def test_a_connection_open_at_midnight_makes_the_first_second_recorded(tmp_path):
    connected_since_yesterday(tmp_path)
    write_trades(tmp_path, [(T0 + 5_000, 1, "100", "1", False)])
    assert seconds_not_recorded(features(tmp_path), 0, 5) == []


def test_without_the_previous_day_ledger_the_day_is_recorded_from_its_first_record(tmp_path):
    write_events(tmp_path, [{"event": "connect", "event_time_ms": T0 + 4_000, "conn_id": "c2"}], symbol="ALL")
    write_trades(tmp_path, [(T0 + 5_000, 1, "100", "1", False)])
    assert seconds_not_recorded(features(tmp_path), 0, 5) == [0, 1, 2, 3]


def test_a_connection_closed_before_midnight_leaves_the_day_unrecorded_until_the_next_connect(tmp_path):
    write_events(
        tmp_path,
        [
            {"event": "connect", "event_time_ms": T0 - 3_600_000},
            {"event": "disconnect", "event_time_ms": T0 - 1_000, "reason": "collector stopping"},
        ],
        day=PREVIOUS_DAY,
        symbol="ALL",
    )
    write_events(tmp_path, [{"event": "connect", "event_time_ms": T0 + 2_500, "conn_id": "c2"}], symbol="ALL")
    write_trades(tmp_path, [(T0 + 5_000, 1, "100", "1", False)])
    assert seconds_not_recorded(features(tmp_path), 0, 5) == [0, 1]


def test_a_crash_before_midnight_is_unrecorded_until_the_restart_despite_the_open_connection(tmp_path):
    connected_since_yesterday(tmp_path)
    write_events(
        tmp_path,
        [
            {"event": "gap", "event_time_ms": T0 + 7_000, "stream": "btcusdt@aggTrade", "conn_id": "w2",
             "reason": "collector down (crash)", "from_time_ms": T0 - 10_000, "to_time_ms": T0 + 7_000},
        ],
    )  # fmt: skip
    write_events(tmp_path, [{"event": "connect", "event_time_ms": T0 + 7_010, "conn_id": "c2"}], symbol="ALL")
    write_trades(tmp_path, [(T0 + 9_000, 1, "100", "1", False)])
    assert seconds_not_recorded(features(tmp_path), 0, 9) == [0, 1, 2, 3, 4, 5, 6]


def test_a_day_without_any_record_is_wholly_unrecorded(tmp_path):
    connected_since_yesterday(tmp_path)
    c = features(tmp_path)
    assert not any(c["recorded"]) and set(c["close"]) == {None}


def test_a_day_with_disconnects_and_a_crash_matches_the_plain_reference(tmp_path):
    write_synthetic_day(tmp_path, DAY, SYMBOL, trades=3_000, ticks=1_500, start_s=3_600, end_s=7_200, seed=3)
    connected_since_yesterday(tmp_path)
    write_events(
        tmp_path,
        [
            {"event": "disconnect", "event_time_ms": T0 + 4_000_500, "reason": "server closed", "conn_id": "c1"},
            {"event": "disconnect", "event_time_ms": T0 + 4_003_000, "reason": "connect failed", "conn_id": "c2"},
            {"event": "connect", "event_time_ms": T0 + 4_020_200, "conn_id": "c3"},
            {"event": "connect", "event_time_ms": T0 + 4_500_000, "conn_id": "c4"},
            {"event": "disconnect", "event_time_ms": T0 + 4_500_100, "reason": "replaced: lifetime rotation",
             "conn_id": "c3"},
        ],
        symbol="ALL",
    )  # fmt: skip
    write_events(
        tmp_path,
        [{"event": "gap", "event_time_ms": T0 + 5_030_700, "stream": "btcusdt@bookTicker", "conn_id": "w2",
          "reason": "collector down (crash)", "from_time_ms": T0 + 5_000_300, "to_time_ms": T0 + 5_030_700}],
    )  # fmt: skip
    parquet_dirs = [kind_dir(tmp_path, d, owner, "events") for d in (PREVIOUS_DAY, DAY) for owner in (SYMBOL, "ALL")]
    reference = reference_features(kind_dir(tmp_path, DAY, SYMBOL, "prices").parent, parquet_dirs, T0)
    table = build_features(tmp_path, DAY, SYMBOL, FeatureParams()).table
    assert_matches_reference(table, reference)
    recorded = table.column("recorded").to_pylist()
    unrecorded_in = {
        window: recorded[window[0] : window[1]].count(False) for window in ((4_001, 4_020), (5_001, 5_030))
    }
    assert all(unrecorded_in.values()), unrecorded_in  # seconds with data stay recorded, the empty ones do not
    assert recorded[0] and all(recorded[4_020:5_000]) and not any(recorded[7_201:])


def test_empty_minutes_are_judged_only_where_every_second_was_recorded():
    trade_count = np.zeros(86_400, dtype=np.int64)
    trade_count[[30, 150, 270]] = 1  # trades in minutes 0, 2 and 4
    recorded = np.zeros(86_400, dtype=bool)
    recorded[:300] = True
    recorded[200] = False  # minute 3 has an unrecorded second
    rate = empty_minute_rate(pa.table({"trade_count": trade_count, "recorded": recorded}))
    assert rate == {"rate": 0.25, "empty_minutes": 1, "covered_minutes": 4}, "minute 1 is empty, minute 3 not judged"

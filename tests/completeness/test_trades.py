"""The aggTrade row of the completeness certificate, on real Parquet files: runs of ws, REST and missing ids, and
which ledger record explains a hole."""

from __future__ import annotations

import json

import pytest

from harvest_pipeline.collector.loss_journal import MANY_STREAMS
from harvest_pipeline.completeness import build_certificate, holes
from harvest_pipeline.schema import ALL_SYMBOLS
from tests.completeness.rawfiles import (
    DAY,
    DAY_BEFORE,
    SYMBOL,
    TRADES,
    trade_ms,
    trade_recv_ns,
    write_prices,
)
from tests.features.rawdata import write_events


def trades_row(root) -> dict:
    [row] = [row for row in build_certificate(root, DAY, SYMBOL).to_pylist() if row["sequence"] == "agg_trade_id"]
    return row


def hole(first: int, last: int, cause: str, reason: str | None, after: int | None, before: int | None) -> dict:
    """The hole ``first..last`` between trades ``after`` and ``before`` (ids of today's test trades)."""
    return {
        "first_id": first,
        "last_id": last,
        "ids": last - first + 1,
        "cause": cause,
        "reason": reason,
        "after_time_ms": None if after is None else trade_ms(after),
        "before_time_ms": None if before is None else trade_ms(before),
    }


def ledger(root, *records: dict, day=DAY, symbol=SYMBOL) -> None:
    """Ledger records on ``TRADES`` (unless they name another stream), recorded when trade 200 happened."""
    rows = [{"event_time_ms": trade_ms(200, day), "stream": TRADES, **record} for record in records]
    write_events(root, rows, part=f"part-ev-{len(list(root.rglob('*.parquet')))}", day=day, symbol=symbol)


def with_hole_111_115(root) -> None:
    write_prices(root, range(100, 111))
    write_prices(root, range(116, 121), part="part-b")


def test_ids_that_arrived_only_by_rest_form_one_healed_hole(tmp_path):
    write_prices(tmp_path, range(100, 111))
    write_prices(tmp_path, range(111, 116), source="rest", part="part-r")
    write_prices(tmp_path, range(116, 121), part="part-b")
    row = trades_row(tmp_path)
    assert row["stream"] == TRADES
    assert (row["first_id"], row["last_id"], row["previous_day_last_id"]) == (100, 120, None)
    assert (row["rows"], row["rows_ws"], row["rows_rest"], row["ids_missing"]) == (21, 16, 5, 0)
    assert row["holes"] == [hole(111, 115, "healed", "filled by REST", 110, 116)]
    assert (row["healed_holes"], row["declared_holes"], row["unexplained_holes"], row["certified"]) == (1, 0, 0, True)
    assert row["book_chain_seconds"] is None and row["book_synced_at_end"] is None


def test_a_hole_split_between_rest_rows_and_a_declared_backfill_range(tmp_path):
    write_prices(tmp_path, range(100, 111))
    write_prices(tmp_path, range(111, 113), source="rest", part="part-r")
    write_prices(tmp_path, range(120, 126), part="part-b")
    outcome = {"k": "backfill", "outcome": "declared"}
    ledger(
        tmp_path,
        {"event": "backfill", "reason": "fetched", "from_id": 111, "to_id": 112, "detail": '{"outcome":"fetched"}'},
        {
            "event": "backfill",
            "reason": "older than REST keeps",
            "from_id": 113,
            "to_id": 119,
            "detail": json.dumps(outcome),
        },
    )
    row = trades_row(tmp_path)
    assert row["holes"] == [
        hole(111, 112, "healed", "filled by REST", 110, 120),
        hole(113, 119, "declared", "older than REST keeps", 112, 120),
    ]
    assert (row["ids_missing"], row["healed_holes"], row["declared_holes"], row["certified"]) == (7, 1, 1, True)


@pytest.mark.parametrize(
    ("record", "cause", "reason"),
    [
        (
            {
                "event": "backfill",
                "reason": "exchange has none",
                "from_id": 111,
                "to_id": 115,
                "detail": '{"outcome":"declared"}',
            },
            "declared",
            "exchange has none",
        ),
        (
            {
                "event": "backfill",
                "reason": "exchange has none",
                "from_id": 111,
                "to_id": 114,
                "detail": '{"outcome":"declared"}',
            },
            "unexplained",
            None,
        ),
        (
            {"event": "backfill", "reason": "fetched", "from_id": 111, "to_id": 115, "detail": '{"outcome":"fetched"}'},
            "unexplained",
            None,
        ),
        (
            {"event": "gap", "reason": "aggTrade id jump", "from_id": 111, "to_id": 116, "count": 5},
            "declared",
            "aggTrade id jump; not backfilled",
        ),
        (
            {"event": "gap", "reason": "aggTrade id jump", "from_id": 111, "to_id": 115, "count": 4},
            "unexplained",
            None,
        ),
        (
            {"event": "gap", "stream": "ethusdt@aggTrade", "reason": "aggTrade id jump", "from_id": 111, "to_id": 116},
            "unexplained",
            None,
        ),
    ],
    ids=[
        "backfill-declared-covers",
        "backfill-declared-short-by-one",
        "backfill-fetched-explains-nothing",
        "gap-missing-range-covers",
        "gap-short-by-one",
        "gap-of-another-stream",
    ],
)
def test_a_missing_run_is_declared_only_by_a_record_covering_all_its_ids(tmp_path, record, cause, reason):
    with_hole_111_115(tmp_path)
    ledger(tmp_path, record)
    row = trades_row(tmp_path)
    assert row["holes"] == [hole(111, 115, cause, reason, 110, 116)]
    assert row["ids_missing"] == 5
    assert row["certified"] is (cause == "declared")


def write_loss(first_recv_ns: int, last_recv_ns: int, **extra) -> dict:
    detail = {"k": "write_loss", "s": TRADES, "reason": "queue full", "lines": 5, **extra}
    detail |= {"first_recv_ns": first_recv_ns, "last_recv_ns": last_recv_ns}
    return {
        "event": "write_loss",
        "reason": "queue full",
        "from_time_ms": first_recv_ns // 1_000_000,
        "to_time_ms": last_recv_ns // 1_000_000,
        "count": 5,
        "detail": json.dumps(detail),
    }


@pytest.mark.parametrize(
    ("record", "symbol", "cause"),
    [
        (write_loss(trade_recv_ns(111), trade_recv_ns(115)), SYMBOL, "declared"),
        (write_loss(trade_recv_ns(110) + 1, trade_recv_ns(110) + 2), SYMBOL, "declared"),
        (write_loss(trade_recv_ns(117), trade_recv_ns(118)), SYMBOL, "unexplained"),
        ({**write_loss(trade_recv_ns(111), trade_recv_ns(115)), "stream": MANY_STREAMS}, ALL_SYMBOLS, "declared"),
        ({**write_loss(trade_recv_ns(111), trade_recv_ns(115)), "stream": "ethusdt@aggTrade"}, SYMBOL, "unexplained"),
    ],
    ids=["covers-the-window", "inside-the-window", "after-the-window", "several-streams", "another-stream"],
)
def test_a_write_loss_explains_a_hole_when_its_receive_times_meet_the_window_around_it(tmp_path, record, symbol, cause):
    with_hole_111_115(tmp_path)
    ledger(tmp_path, record, symbol=symbol)
    row = trades_row(tmp_path)
    assert row["holes"] == [hole(111, 115, cause, "write loss: queue full" if cause == "declared" else None, 110, 116)]


def test_a_write_loss_naming_trade_ids_explains_by_ids_not_times(tmp_path):
    with_hole_111_115(tmp_path)
    late = trade_recv_ns(150)
    ledger(
        tmp_path, write_loss(late, late, first_id=111, last_id=115), write_loss(late, late, first_id=200, last_id=210)
    )
    assert trades_row(tmp_path)["holes"] == [hole(111, 115, "declared", "write loss: queue full", 110, 116)]


@pytest.mark.parametrize(
    ("ranges", "cause"),
    [(((111, 112), (113, 115)), "declared"), (((111, 113), (112, 115)), "declared"), (((111, 112), (114, 115)), None)],
    ids=["touching", "overlapping", "one-id-apart"],
)
def test_several_records_naming_trade_ids_explain_a_hole_their_union_covers(tmp_path, ranges, cause):
    with_hole_111_115(tmp_path)
    late = trade_recv_ns(150)
    ledger(tmp_path, *(write_loss(late, late, first_id=low, last_id=high) for low, high in ranges))
    [judged] = trades_row(tmp_path)["holes"]
    assert judged["cause"] == (cause or "unexplained")


def test_the_most_specific_record_names_the_reason(tmp_path):
    with_hole_111_115(tmp_path)
    ledger(
        tmp_path,
        write_loss(trade_recv_ns(111), trade_recv_ns(115)),
        {"event": "gap", "reason": "aggTrade id jump", "from_id": 111, "to_id": 116},
    )
    assert trades_row(tmp_path)["holes"][0]["reason"] == "aggTrade id jump; not backfilled"


def test_rows_deleted_from_a_stored_day_become_an_unexplained_hole(tmp_path):
    write_prices(tmp_path, range(100, 121))
    assert trades_row(tmp_path)["certified"] is True
    write_prices(tmp_path, [*range(100, 105), *range(108, 121)])
    row = trades_row(tmp_path)
    assert row["holes"] == [hole(105, 107, "unexplained", None, 104, 108)]
    assert (row["rows"], row["ids_missing"], row["unexplained_holes"], row["certified"]) == (18, 3, 1, False)


def test_a_hole_across_midnight_starts_after_the_day_befores_last_id(tmp_path):
    write_prices(tmp_path, range(1, 51), day=DAY_BEFORE)
    write_prices(tmp_path, range(60, 81))
    row = trades_row(tmp_path)
    assert (row["first_id"], row["last_id"], row["previous_day_last_id"]) == (51, 80, 50)
    assert row["holes"] == [{**hole(51, 59, "unexplained", None, None, 60), "after_time_ms": trade_ms(50, DAY_BEFORE)}]
    assert (row["rows"], row["ids_missing"], row["certified"]) == (21, 9, False)


def test_a_collector_down_time_recorded_the_day_before_explains_the_hole_across_midnight(tmp_path):
    write_prices(tmp_path, range(1, 51), day=DAY_BEFORE)
    write_prices(tmp_path, range(60, 81))
    down = {
        "event": "gap",
        "reason": "collector down (crash)",
        "from_time_ms": trade_ms(50, DAY_BEFORE),
        "to_time_ms": trade_ms(59),
        "detail": json.dumps({"k": "gap", "last_id": 50}),
    }
    ledger(tmp_path, down, day=DAY_BEFORE)
    row = trades_row(tmp_path)
    assert row["holes"][0]["cause"] == "declared"
    assert row["holes"][0]["reason"] == "collector down (crash); not backfilled"
    assert row["certified"] is True


def test_a_collector_down_time_outside_the_hole_explains_nothing(tmp_path):
    write_prices(tmp_path, range(1, 51), day=DAY_BEFORE)
    write_prices(tmp_path, range(60, 81))
    ledger(
        tmp_path,
        {"event": "gap", "reason": "collector down (crash)", "from_time_ms": trade_ms(70), "to_time_ms": trade_ms(75)},
    )
    assert trades_row(tmp_path)["holes"][0]["cause"] == "unexplained"


def test_rows_repeated_across_parts_count_once(tmp_path):
    write_prices(tmp_path, range(100, 111))
    write_prices(tmp_path, range(105, 121), part="part-b")
    write_prices(tmp_path, range(100, 121), part="day-0123")
    row = trades_row(tmp_path)
    assert (row["rows"], row["rows_ws"], row["holes"], row["certified"]) == (21, 21, [], True)


def test_a_websocket_row_wins_over_a_rest_row_of_the_same_id(tmp_path):
    write_prices(tmp_path, range(100, 121))
    write_prices(tmp_path, [*range(105, 110), 121, 122], source="rest", part="part-r")
    row = trades_row(tmp_path)
    assert (row["rows"], row["rows_ws"], row["rows_rest"], row["last_id"]) == (23, 21, 2, 122)
    assert row["holes"] == [hole(121, 122, "healed", "filled by REST", 120, None)]


def test_files_written_before_the_source_column_read_as_websocket_rows(tmp_path):
    write_prices(tmp_path, range(100, 111), source=None)
    write_prices(tmp_path, range(111, 116), source="rest", part="part-r")
    write_prices(tmp_path, range(116, 121), part="part-b")
    row = trades_row(tmp_path)
    assert (row["rows"], row["rows_ws"], row["rows_rest"]) == (21, 16, 5)
    assert row["holes"] == [hole(111, 115, "healed", "filled by REST", 110, 116)]


def test_a_day_of_old_files_only(tmp_path):
    write_prices(tmp_path, range(1, 11), source=None, day=DAY_BEFORE)
    write_prices(tmp_path, [*range(11, 20), 25], source=None)
    row = trades_row(tmp_path)
    assert (row["rows"], row["rows_ws"], row["previous_day_last_id"]) == (10, 10, 10)
    assert row["holes"] == [hole(20, 24, "unexplained", None, 19, 25)]


def test_beyond_the_listing_cap_counts_stay_exact_and_unexplained_holes_are_listed_first(tmp_path, monkeypatch):
    monkeypatch.setattr(holes, "MAX_LISTED_HOLES", 3)
    write_prices(tmp_path, range(100, 121, 2))
    write_prices(tmp_path, [101, 103], source="rest", part="part-r")
    ledger(tmp_path, {"event": "gap", "reason": "aggTrade id jump", "from_id": 105, "to_id": 106})
    row = trades_row(tmp_path)
    assert (row["healed_holes"], row["declared_holes"], row["unexplained_holes"], row["ids_missing"]) == (2, 1, 7, 8)
    assert row["holes"] == [hole(i, i, "unexplained", None, i - 1, i + 1) for i in (107, 109, 111)]


def test_the_receive_window_of_a_hole_next_to_rest_rows_is_bounded_by_websocket_rows(tmp_path):
    write_prices(tmp_path, range(100, 111))
    write_prices(tmp_path, range(111, 113), source="rest", part="part-r")
    write_prices(tmp_path, range(116, 121), part="part-b")
    ledger(tmp_path, write_loss(trade_recv_ns(113), trade_recv_ns(115)))
    assert trades_row(tmp_path)["holes"] == [
        hole(111, 112, "healed", "filled by REST", 110, 116),
        hole(113, 115, "declared", "write loss: queue full", 112, 116),
    ]

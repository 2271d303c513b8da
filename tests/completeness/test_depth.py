"""The diff-depth row of the completeness certificate: ``pu`` breaks, what explains them, and the time a local book
could be kept in sync from a REST snapshot (across midnight through the day before's certificate)."""

from __future__ import annotations

import json

import pytest

from harvest_pipeline.completeness import build_certificate, certificate_path, write_certificate
from tests.completeness.rawfiles import (
    DAY,
    DAY_BEFORE,
    DEPTH,
    SYMBOL,
    chain,
    diff_ms,
    diff_recv_ns,
    write_diffs,
    write_snapshots,
)
from tests.features.rawdata import write_events


def depth_row(root, day=DAY) -> dict:
    [row] = [row for row in build_certificate(root, day, SYMBOL).to_pylist() if row["sequence"] == "depth_pu"]
    return row


def brk(last_u: int, pu: int, cause: str, reason: str | None, before_u: int, day_of_last=DAY) -> dict:
    """The break after the diff ``u = last_u`` whose successor (``u = before_u``) claims ``pu``."""
    return {
        "first_id": last_u,
        "last_id": pu,
        "ids": None,
        "cause": cause,
        "reason": reason,
        "after_time_ms": diff_ms(last_u, day_of_last),
        "before_time_ms": diff_ms(before_u),
    }


def events(root, *records: dict, day=DAY) -> None:
    rows = [{"event_time_ms": diff_ms(5000), "stream": DEPTH, **record} for record in records]
    write_events(root, rows, part="part-ev", day=day)


def test_a_break_is_declared_by_the_collectors_gap_and_another_stays_unexplained(tmp_path):
    write_diffs(tmp_path, chain(10, 1000) + chain(1100, 2000, pu=1050) + chain(2100, 3000, pu=2050))
    events(tmp_path, {"event": "gap", "reason": "depth pu chain break", "from_id": 1000, "to_id": 1050, "count": 40})
    row = depth_row(tmp_path)
    assert row["stream"] == DEPTH
    assert (row["first_id"], row["last_id"], row["previous_day_last_id"]) == (1, 3000, None)
    assert (row["rows"], row["rows_ws"], row["rows_rest"], row["ids_missing"]) == (100 + 91 + 91, 282, 0, None)
    assert row["holes"] == [
        brk(1000, 1050, "declared", "depth pu chain break", 1100),
        brk(2000, 2050, "unexplained", None, 2100),
    ]
    assert (row["healed_holes"], row["declared_holes"], row["unexplained_holes"]) == (0, 1, 1)
    assert row["certified"] is False


def test_a_gap_touching_a_break_only_at_one_end_explains_nothing(tmp_path):
    write_diffs(tmp_path, chain(10, 1000) + chain(1100, 2000, pu=1050))
    events(tmp_path, {"event": "gap", "reason": "depth pu chain break", "from_id": 900, "to_id": 1000})
    assert depth_row(tmp_path)["holes"] == [brk(1000, 1050, "unexplained", None, 1100)]


@pytest.mark.parametrize(
    ("first_recv", "last_recv", "cause"),
    [
        (diff_recv_ns(1010), diff_recv_ns(1090), "declared"),
        (diff_recv_ns(900), diff_recv_ns(990), "unexplained"),
    ],
    ids=["between-the-diffs", "before-the-break"],
)
def test_a_write_loss_explains_a_break_by_receive_time(tmp_path, first_recv, last_recv, cause):
    write_diffs(tmp_path, chain(10, 1000) + chain(1100, 2000, pu=1050))
    detail = {"k": "write_loss", "s": DEPTH, "first_recv_ns": first_recv, "last_recv_ns": last_recv, "lines": 9}
    events(tmp_path, {"event": "write_loss", "reason": "disk full", "count": 9, "detail": json.dumps(detail)})
    reason = "write loss: disk full" if cause == "declared" else None
    assert depth_row(tmp_path)["holes"] == [brk(1000, 1050, cause, reason, 1100)]


def test_the_stream_is_named_by_the_ledger_else_plain_depth(tmp_path):
    write_diffs(tmp_path, chain(10, 100))
    assert depth_row(tmp_path)["stream"] == "btcusdt@depth"
    connect = {"k": "connect", "streams": ["btcusdt@aggTrade", "btcusdt@depth@500ms", "ethusdt@depth@100ms"]}
    events(tmp_path, {"event": "connect", "stream": None, "detail": json.dumps(connect)})
    assert depth_row(tmp_path)["stream"] == "btcusdt@depth@500ms"


def test_diffs_repeated_across_parts_count_once(tmp_path):
    write_diffs(tmp_path, chain(10, 1000))
    write_diffs(tmp_path, chain(500, 1500, pu=490), part="part-b")
    row = depth_row(tmp_path)
    assert (row["rows"], row["holes"], row["certified"]) == (150, [], True)


@pytest.mark.parametrize(
    ("snapshot", "seconds", "synced_at_end"),
    [
        (1505, 20.0 - 15.1, True),  # U=1501 <= L <= u=1510
        (1050, 20.0 - 11.0, True),  # L == pu of the chain's first diff
        (1095, 20.0 - 11.0, True),  # inside the chain's first diff
        (1060, 0.0, False),  # inside the break: no diff can start a book on it
        (505, 10.0 - 5.1, False),  # the first chain, which a break ends
        (None, 0.0, False),
    ],
)
def test_book_chain_time_runs_from_the_diff_a_snapshot_synchronises_to_the_chains_end(
    tmp_path, snapshot, seconds, synced_at_end
):
    write_diffs(tmp_path, chain(10, 1000) + chain(1100, 2000, pu=1050))
    if snapshot is not None:
        write_snapshots(tmp_path, [snapshot])
    row = depth_row(tmp_path)
    assert row["book_chain_seconds"] == pytest.approx(seconds)
    assert row["book_chain_share"] == pytest.approx(seconds / 86_400)
    assert row["book_synced_at_end"] is synced_at_end


def test_every_synchronised_chain_adds_up(tmp_path):
    write_diffs(tmp_path, chain(10, 1000) + chain(1100, 2000, pu=1050))
    write_snapshots(tmp_path, [505, 1505, 1705])
    assert depth_row(tmp_path)["book_chain_seconds"] == pytest.approx((10.0 - 5.1) + (20.0 - 15.1))


def certify_day_before(root) -> None:
    write_diffs(root, chain(10, 1000), day=DAY_BEFORE)
    write_snapshots(root, [505], day=DAY_BEFORE)
    before = build_certificate(root, DAY_BEFORE, SYMBOL)
    assert before.column("book_synced_at_end").to_pylist() == [True]
    write_certificate(before, root, DAY_BEFORE, SYMBOL)


def test_a_chain_continuing_a_day_synchronised_at_midnight_is_synchronised_from_its_first_diff(tmp_path):
    certify_day_before(tmp_path)
    write_diffs(tmp_path, chain(1010, 2000))
    row = depth_row(tmp_path)
    assert (row["previous_day_last_id"], row["holes"]) == (1000, [])
    assert row["book_chain_seconds"] == pytest.approx(20.0 - 10.1)
    assert row["book_synced_at_end"] is True


def test_without_the_day_befores_certificate_the_continuing_chain_is_not_synchronised(tmp_path):
    certify_day_before(tmp_path)
    certificate_path(tmp_path, DAY_BEFORE, SYMBOL).unlink()
    write_diffs(tmp_path, chain(1010, 2000))
    row = depth_row(tmp_path)
    assert (row["book_chain_seconds"], row["book_synced_at_end"]) == (0.0, False)


def test_a_break_at_midnight_is_a_hole_and_ends_the_day_befores_synchronisation(tmp_path):
    certify_day_before(tmp_path)
    write_diffs(tmp_path, chain(1100, 2000, pu=1050))
    row = depth_row(tmp_path)
    assert row["holes"] == [brk(1000, 1050, "unexplained", None, 1100, day_of_last=DAY_BEFORE)]
    assert (row["book_chain_seconds"], row["book_synced_at_end"]) == (0.0, False)

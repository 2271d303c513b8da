"""Which certificate holes a run takes on, and how runs share one data root: one at a time, an interrupted run's segment
sealed by the next, nothing written when there is nothing to fill."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from harvest_pipeline.backfill.days import heal_days, open_holes
from harvest_pipeline.backfill.holes import not_served_reason
from harvest_pipeline.backfill.segment import BACKFILL_COLLECTOR_ID, exclusive_healing
from harvest_pipeline.backfill.settle import gave_up_reason
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.schema import COMPLETENESS
from harvest_pipeline.segments import OpenSegment, encode_control, list_sealed_segments
from tests.backfill.recording import SYMBOL, compact

DAY = dt.date(2026, 3, 2)
DAY_MS = (DAY - dt.date(1970, 1, 1)).days * 86_400_000
UNREACHABLE_REST = "http://127.0.0.1:9"
"""No run below may send a request: a request here fails."""


def certificate(holes: list[dict[str, Any]], unlisted: int = 0) -> pa.Table:
    """A certificate whose aggTrade row lists ``holes`` (and counts ``unlisted`` more unexplained ones)."""
    causes = [hole["cause"] for hole in holes]
    row = {
        "stream": "btcusdt@aggTrade",
        "sequence": "agg_trade_id",
        "first_id": 1,
        "last_id": 1_000,
        "previous_day_last_id": None,
        "rows": 900,
        "rows_ws": 900,
        "rows_rest": 0,
        "ids_missing": 100,
        "holes": [{"ids": h["last_id"] - h["first_id"] + 1, "after_time_ms": None, **h} for h in holes],
        "healed_holes": causes.count("healed"),
        "declared_holes": causes.count("declared"),
        "unexplained_holes": causes.count("unexplained") + unlisted,
        "book_chain_seconds": None,
        "book_chain_share": None,
        "book_synced_at_end": None,
        "certified": False,
    }
    return pa.Table.from_pylist([row], schema=COMPLETENESS)


def test_a_run_takes_unexplained_holes_and_holes_declared_by_others_but_not_a_backfill_declaration() -> None:
    listed = [
        {"first_id": 10, "last_id": 12, "cause": "healed", "reason": "filled by REST", "before_time_ms": DAY_MS + 5},
        {"first_id": 20, "last_id": 22, "cause": "unexplained", "reason": None, "before_time_ms": DAY_MS + 6},
        {"first_id": 30, "last_id": 31, "cause": "declared", "reason": "aggTrade id jump; not backfilled"},
        {"first_id": 40, "last_id": 40, "cause": "declared", "reason": not_served_reason(40, 40)},
        {"first_id": 50, "last_id": 59, "cause": "declared", "reason": gave_up_reason(5, "HTTP 503")},
    ]
    for hole in listed:
        hole.setdefault("before_time_ms", DAY_MS - 1)  # a time of the day before: stamped at the day's start
    table = certificate(listed, unlisted=3)
    found, unlisted = open_holes(table, SYMBOL, DAY, retry_declared=False)
    assert [(h.first_id, h.last_id) for h in found] == [(20, 22), (30, 31)]
    assert found[0].cause == f"certificate of {DAY}: unexplained"
    assert found[1].cause == f"certificate of {DAY}: declared (aggTrade id jump; not backfilled)"
    assert [h.stamp_ns for h in found] == [(DAY_MS + 6) * 10**6, DAY_MS * 10**6]
    assert unlisted == 3
    retried, _ = open_holes(table, SYMBOL, DAY, retry_declared=True)
    assert [h.first_id for h in retried] == [20, 30, 40, 50]


def test_a_run_with_nothing_to_fill_sends_nothing_and_writes_no_segment(tmp_path: Path) -> None:
    paths = DataPaths.from_root(tmp_path / "data")
    report = heal_days(paths, SYMBOL, DAY, DAY + dt.timedelta(days=2), UNREACHABLE_REST)
    assert report.days == [DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)]
    assert (report.requests, report.segment) == (0, None)
    assert list_sealed_segments(paths.sealed_segments) == []
    assert list((paths.open_segments / BACKFILL_COLLECTOR_ID).glob("*.part")) == []


def test_a_second_run_waits_for_the_first_then_seals_what_an_interrupted_run_left_open(tmp_path: Path) -> None:
    paths = DataPaths.from_root(tmp_path / "data")
    open_dir = paths.open_segments / BACKFILL_COLLECTOR_ID
    open_dir.mkdir(parents=True)
    left_open = OpenSegment(open_dir, "20260302T000000000000Z-backfill-dead-000001", BACKFILL_COLLECTOR_ID, 1)
    record = encode_control(time.time_ns(), "dead-heal", 1, "backfill", "btcusdt@aggTrade", outcome="fetched")
    left_open.append([record])
    released = threading.Event()

    def first_run() -> None:
        with exclusive_healing(paths):
            released.wait(10)

    holder = threading.Thread(target=first_run)
    holder.start()
    time.sleep(0.3)  # the first run holds the lock (and sealed the leftover)
    started = time.monotonic()
    threading.Timer(1.5, released.set).start()
    report = heal_days(paths, SYMBOL, DAY, DAY, UNREACHABLE_REST)
    holder.join()
    assert time.monotonic() - started >= 1.4, "the second run waited for the first"
    assert report.segment is None
    [sealed] = list_sealed_segments(paths.sealed_segments)
    assert sealed.name == left_open.name
    assert compact(paths, sealed.name).control_records == 1

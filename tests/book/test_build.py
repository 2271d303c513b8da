"""A book day built from real Parquet files: carried over midnight when the chain continues, breaks explained by the
feed ledger, duplicates across part files read once, the three kinds written with their schemas."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow.parquet as pq

from harvest_pipeline.book import book_file, build_book, write_book
from harvest_pipeline.features.sources import day_start_ms
from harvest_pipeline.schema import BOOK_1S, BOOK_CHECKPOINT, BOOK_VALIDITY, DEPTH_SNAPSHOT
from tests.completeness.rawfiles import DEPTH, chain, diff_ms
from tests.completeness.rawfiles import write_diffs as write_raw_diffs
from tests.features.rawdata import DAY, SYMBOL, write_events, write_raw

NEXT_DAY = DAY + dt.timedelta(days=1)
STEP = 1000
"""Update ids per diff: diff ``u`` happens ``u`` hundredths of a second after midnight, so one diff every 10 s."""
LAST_OF_DAY = 8_640_000 - STEP


def level(price: str, qty: str) -> dict[str, Decimal]:
    return {"price": Decimal(price), "qty": Decimal(qty)}


def write_diffs(root, diffs, day=DAY, part="part-a", bids=None):
    """Diffs (U, u, pu) on ``day``; diff ``i`` sets the bid 99.5 to ``i + 1`` (or ``bids[i]``)."""
    bids = bids or [[level("99.5", str(i + 1))] for i in range(len(diffs))]
    return write_raw_diffs(root, diffs, part=part, day=day, bids=bids)


def write_snapshot(root, last_update_id, day=DAY, bid="100.0", ask="100.1"):
    t = diff_ms(last_update_id, day)
    columns = {
        "event_time_ms": [t],
        "transaction_time_ms": [t],
        "last_update_id": [last_update_id],
        "bids": [[level(bid, "1.5"), level("99.0", "2")]],
        "asks": [[level(ask, "0.25")]],
    }
    return write_raw(root, day, SYMBOL, "depth_snapshot", f"snap-{last_update_id}", columns, DEPTH_SNAPSHOT)


def build_and_write(root, day):
    book = build_book(root, day, SYMBOL)
    write_book(book, root)
    return book


def test_a_chain_through_midnight_is_one_valid_book_carried_by_the_last_checkpoint(tmp_path):
    write_diffs(tmp_path, chain(STEP, LAST_OF_DAY, step=STEP))
    write_snapshot(tmp_path, 500)
    write_diffs(tmp_path, chain(LAST_OF_DAY + STEP, LAST_OF_DAY + 5 * STEP, step=STEP), day=NEXT_DAY)

    day = build_and_write(tmp_path, DAY)
    [interval] = day.validity.to_pylist()
    assert (interval["start"], interval["end"]) == ("snapshot", "continues")
    assert interval["to_time_ms"] == day_start_ms(NEXT_DAY) and interval["diffs"] == 8639
    assert day.seconds.column("valid").to_pylist()[-1] is True

    next_day = build_and_write(tmp_path, NEXT_DAY)
    [carried] = next_day.validity.to_pylist()
    assert (carried["start"], carried["from_time_ms"], carried["first_update_id"]) == (
        "carried",
        day_start_ms(NEXT_DAY),
        LAST_OF_DAY,
    )
    first_second = next_day.seconds.slice(0, 1).to_pylist()[0]
    assert first_second["valid"] and first_second["bid_prices"][:2] == [Decimal("100.0"), Decimal("99.5")]
    assert first_second["bid_qtys"][1] == Decimal(8639), "the last diff of the day before set it"


def test_without_the_day_before_s_book_the_next_day_waits_for_a_snapshot(tmp_path):
    write_diffs(tmp_path, chain(LAST_OF_DAY + STEP, LAST_OF_DAY + 5 * STEP, step=STEP), day=NEXT_DAY)
    assert build_book(tmp_path, NEXT_DAY, SYMBOL).validity.num_rows == 0


def test_a_break_ends_the_interval_with_the_gap_the_collector_recorded(tmp_path):
    diffs = chain(STEP, 10 * STEP, step=STEP) + chain(20 * STEP, 30 * STEP, pu=15 * STEP, step=STEP)
    write_diffs(tmp_path, diffs)
    write_snapshot(tmp_path, 500)
    write_snapshot(tmp_path, 25 * STEP - 3)
    gap = {
        "event": "gap",
        "event_time_ms": diff_ms(20 * STEP),
        "stream": DEPTH,
        "reason": "depth pu chain break",
        "from_id": 10 * STEP,
        "to_id": 15 * STEP,
    }
    write_events(tmp_path, [gap])

    book = build_book(tmp_path, DAY, SYMBOL)

    first, second = book.validity.to_pylist()
    assert (first["end"], first["end_reason"], first["to_time_ms"]) == (
        "break",
        "depth pu chain break",
        diff_ms(20 * STEP),
    )
    assert (first["break_after_id"], first["break_pu"]) == (10 * STEP, 15 * STEP)
    assert (second["start"], second["snapshot_update_id"], second["from_time_ms"]) == (
        "snapshot",
        25 * STEP - 3,
        diff_ms(25 * STEP),
    )


def test_an_unrecorded_break_is_unexplained(tmp_path):
    write_diffs(tmp_path, chain(STEP, 3 * STEP, step=STEP) + chain(5 * STEP, 6 * STEP, pu=4 * STEP, step=STEP))
    write_snapshot(tmp_path, 500)
    [interval] = build_book(tmp_path, DAY, SYMBOL).validity.to_pylist()
    assert interval["end_reason"] == "unexplained"


def test_diffs_repeated_in_two_part_files_apply_once(tmp_path):
    diffs = chain(STEP, 5 * STEP, step=STEP)
    write_diffs(tmp_path, diffs, part="part-a")
    write_diffs(tmp_path, diffs[2:], part="part-b", bids=[[level("99.5", "0")] for _ in diffs[2:]])
    write_snapshot(tmp_path, 500)

    book = build_book(tmp_path, DAY, SYMBOL)

    assert book.stats.diffs == 5 and book.stats.applied == 5
    assert book.seconds.slice(55, 1).to_pylist()[0]["valid"] is False, "the last diff was at 50 s: after it, unknown"
    assert book.seconds.slice(45, 1).to_pylist()[0]["bid_qtys"][1] == Decimal(4), "part-a's copy, received first"


def test_the_three_kinds_are_written_with_their_schemas(tmp_path):
    write_diffs(tmp_path, chain(STEP, 5 * STEP, step=STEP))
    write_snapshot(tmp_path, 500)
    paths = write_book(build_book(tmp_path, DAY, SYMBOL), tmp_path)
    for kind, schema, rows in (
        ("book_validity", BOOK_VALIDITY, 1),
        ("book_1s", BOOK_1S, 86_400),
        ("book_checkpoint", BOOK_CHECKPOINT, 1_440),
    ):
        assert paths[kind] == book_file(tmp_path, DAY, SYMBOL, kind)
        table = pq.read_table(paths[kind])
        assert table.schema.equals(schema) and table.num_rows == rows

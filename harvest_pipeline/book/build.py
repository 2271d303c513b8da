"""The validated book of one UTC day x symbol: read, replay, explain each break from the ledger, store three kinds."""

from __future__ import annotations

import datetime as dt
import gc
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from harvest_pipeline.book.replay import MS_PER_DAY, Interval, ReplayStats, replay_day
from harvest_pipeline.book.sources import book_file, read_day_inputs
from harvest_pipeline.book.tables import checkpoint_table, seconds_table, validity_table
from harvest_pipeline.completeness.depth import depth_stream
from harvest_pipeline.completeness.holes import DEPTH_EXPLANATIONS, judge_holes
from harvest_pipeline.features.sources import DaySources, register_parquet_view
from harvest_pipeline.schema import BOOK_KINDS
from harvest_pipeline.store import write_parquet_atomically

UNEXPLAINED = "unexplained"


@dataclass(frozen=True)
class BookDay:
    """The three tables of one day x symbol and what the replay counted."""

    day: dt.date
    symbol: str
    validity: pa.Table
    seconds: pa.Table
    checkpoints: pa.Table
    stats: ReplayStats
    covered_ms: int
    elapsed_ms: int
    """Milliseconds of the day that have passed when it was built (the whole day once it is over)."""

    @property
    def valid_share(self) -> float:
        """Share of the elapsed day covered by valid intervals."""
        return self.covered_ms / self.elapsed_ms if self.elapsed_ms else 0.0

    @property
    def ticker_agreement(self) -> float | None:
        """Share of compared diffs whose best bid/ask equals bookTicker's; None when nothing was compared."""
        stats = self.stats
        return stats.ticker_agreed / stats.ticker_compared if stats.ticker_compared else None


def build_book(parquet_root: Path, day: dt.date, symbol: str, now_ms: int | None = None) -> BookDay:
    """Reconstruct the book of ``symbol`` on UTC ``day`` from the visible Parquet (docs/book.md). Build days in order:
    a day starts from the day before's last checkpoint."""
    inputs = read_day_inputs(parquet_root, day, symbol)
    collecting = gc.isenabled()
    gc.disable()  # the replay allocates millions of small objects that all live until the day ends: no cycles
    try:
        replay = replay_day(inputs)
    finally:
        if collecting:
            gc.enable()
    explain_breaks(replay.intervals, parquet_root, day, symbol)
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    elapsed = max(0, min(MS_PER_DAY, now - inputs.day_start_ms))
    covered = sum(min(i.to_ms, inputs.day_start_ms + elapsed) - i.from_ms for i in replay.intervals)
    return BookDay(
        day=day,
        symbol=symbol,
        validity=validity_table(replay.intervals),
        seconds=seconds_table(replay.recorder),
        checkpoints=checkpoint_table(replay.recorder),
        stats=replay.stats,
        covered_ms=max(0, covered),
        elapsed_ms=elapsed,
    )


def explain_breaks(intervals: list[Interval], parquet_root: Path, day: dt.date, symbol: str) -> None:
    """Fill ``end_reason`` of every interval that ended in a break with what the feed ledger records about it (a
    ``gap``, a collector's down time, a write loss: the rules of the completeness certificate), else
    ``unexplained``."""
    broken = [interval for interval in intervals if interval.end == "break"]
    if not broken:
        return
    con = duckdb.connect()
    try:
        register_parquet_view(con, "events_raw", DaySources.discover(parquet_root, day, symbol).events, "events")
        holes = pa.table(
            {
                "first_id": pa.array([i.break_after_id for i in broken], pa.int64()),
                "last_id": pa.array([i.break_pu for i in broken], pa.int64()),
                "ids": pa.nulls(len(broken), pa.int64()),
                "kind": pa.array(["break"] * len(broken)),
                "after_time_ms": pa.array([i.break_after_ms for i in broken], pa.int64()),
                "before_time_ms": pa.array([i.to_ms for i in broken], pa.int64()),
                "after_recv_ns": pa.array([i.break_after_recv_ns for i in broken], pa.int64()),
                "before_recv_ns": pa.array([i.break_before_recv_ns for i in broken], pa.int64()),
            }
        )
        con.register("breaks", holes)
        con.execute("CREATE OR REPLACE TEMP TABLE holes AS SELECT * FROM breaks")
        judged = judge_holes(con, depth_stream(con, symbol), DEPTH_EXPLANATIONS)
    finally:
        con.close()
    reasons = {
        (hole["first_id"], hole["last_id"]): hole["reason"] for hole in judged.listed if hole["cause"] == "declared"
    }
    for interval in broken:
        interval.end_reason = reasons.get((interval.break_after_id, interval.break_pu), UNEXPLAINED)


def write_book(book: BookDay, parquet_root: Path) -> dict[str, Path]:
    """Store the three kinds of ``book`` (each file atomically); returns their paths by kind."""
    written = {}
    for kind, table in (
        ("book_validity", book.validity),
        ("book_1s", book.seconds),
        ("book_checkpoint", book.checkpoints),
    ):
        if not table.schema.equals(BOOK_KINDS[kind]):
            raise ValueError(f"cannot write {kind} of {book.symbol} on {book.day}: its schema is not schema's")
        target = book_file(parquet_root, book.day, book.symbol, kind)
        write_parquet_atomically(table, target)
        written[kind] = target
    return written

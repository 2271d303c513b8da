"""A compaction's rows of one kind, split by date and symbol, staged as part files of the Parquet store.

Where the files go, how they are written and how they become visible is the store's business
(``harvest_pipeline.store``); this module splits a kind's table by its date and symbol columns and stages the parts
in threads while the compaction goes on (Parquet encoding releases the GIL).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harvest_pipeline.store import Publication, kind_dir, part_name


@dataclass(frozen=True)
class WrittenFile:
    """One Parquet file a compaction produced."""

    kind: str
    date: str
    symbol: str
    path: Path
    rows: int
    bytes: int
    min_time_ms: int
    max_time_ms: int


@dataclass(frozen=True)
class Partition:
    """The rows of one kind for one date and symbol: one file. ``rows.take(indices)`` are its rows, in order."""

    kind: str
    date: str
    symbol: str
    rows: pa.Table
    indices: np.ndarray


def partitions(table: pa.Table, order: np.ndarray, kind: str) -> list[Partition]:
    """``table`` (schema columns plus ``date`` and ``symbol``) split by date and symbol; ``order`` sorts it by date,
    symbol and then as the files want it."""
    if table.num_rows == 0:
        return []
    keys = table.select(["date", "symbol"]).take(order)
    groups = keys.group_by(["date", "symbol"], use_threads=False).aggregate([([], "count_all")])
    found, offset = [], 0
    for date, symbol, count in zip(*(groups.column(i).to_pylist() for i in range(3)), strict=True):
        found.append(Partition(kind, date, symbol, table, order[offset : offset + count]))
        offset += count
    return found


class PartStager:
    """Stages the part files of one segment in threads, each kind as soon as its rows are ready.

    ``before_first_write`` runs once, before any file is written (compaction verifies the segment's bytes there).
    Staging a kind again replaces what was staged for it. Leaving the ``with`` block waits for every file; ``files``
    then lists them in the order they were staged.
    """

    def __init__(
        self, segment: str, parquet_root: Path, publication: Publication, before_first_write: Callable[[], None]
    ):
        self._segment = segment
        self._parquet_root = parquet_root
        self._publication = publication
        self._before_first_write: Callable[[], None] | None = before_first_write
        self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
        self._staged: dict[str, list[Future[WrittenFile]]] = {}

    def __enter__(self) -> PartStager:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._pool.shutdown(wait=True)

    def ensure_checked(self) -> None:
        """Run ``before_first_write`` unless it already ran (or raised)."""
        check, self._before_first_write = self._before_first_write, None
        if check is not None:
            check()

    def stage(self, kind: str, table: pa.Table, order: np.ndarray, schema: pa.Schema, time_column: str) -> None:
        """Start writing ``table`` (``schema`` columns plus ``date`` and ``symbol``), one file per date and symbol,
        its rows in ``order`` (the threads pick each file's rows, so the main thread never copies them)."""
        self.ensure_checked()
        for earlier in self._staged.pop(kind, []):
            self._publication.withdraw(earlier.result().path)
        self._staged[kind] = [
            self._pool.submit(self._stage_one, part, schema, time_column) for part in partitions(table, order, kind)
        ]

    def files(self) -> list[WrittenFile]:
        """Every staged file (raises the first error of a write)."""
        return [staged.result() for kind_files in self._staged.values() for staged in kind_files]

    def _stage_one(self, part: Partition, schema: pa.Schema, time_column: str) -> WrittenFile:
        target = kind_dir(self._parquet_root, part.date, part.symbol, part.kind) / part_name(self._segment)
        rows = part.rows.select(schema.names).take(part.indices)
        times = rows.column(time_column)
        size = self._publication.stage(rows.cast(schema), target)
        low, high = pc.min(times).as_py(), pc.max(times).as_py()
        return WrittenFile(part.kind, part.date, part.symbol, target, rows.num_rows, size, low, high)

"""The one atomic Parquet writer, and the staged publication that makes a compaction's files appear together.

A file is written to a hidden temp name in its final folder (readers' ``*.parquet`` globs skip it), fsynced, then
renamed into place: readers see the old file or the new one, never half of one. A ``Publication`` stages every file
of one segment first and places them only after all were written, so a failed or killed run before that point
leaves nothing visible (its hidden temp files are removed by ``discard`` or ignored by readers).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harvest_pipeline.segments import LOCAL_FS, FileSystem
from harvest_pipeline.store.consolidation import place_part

ROW_GROUP_ROWS = 256 * 1024
"""Rows per row group: large enough for zstd and scan throughput, small enough that a date/symbol query on one
segment file can skip by min/max time statistics."""
COMPRESSION = "zstd"
STAGED_SUFFIX = ".staged"


def _write_hidden(table: pa.Table, target: Path, fs: FileSystem) -> Path:
    fs.makedirs(target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{STAGED_SUFFIX}")
    try:
        with open(tmp, "wb") as handle:
            pq.write_table(table, handle, compression=COMPRESSION, row_group_size=ROW_GROUP_ROWS)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_parquet_atomically(table: pa.Table, target: Path, fs: FileSystem = LOCAL_FS) -> None:
    """Temp file in the target folder, fsync, rename over ``target``."""
    tmp = _write_hidden(table, target, fs)
    try:
        fs.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class Publication:
    """The part files of one segment: staged hidden, then placed together by ``publish`` (or dropped by ``discard``)."""

    def __init__(self, fs: FileSystem = LOCAL_FS):
        self._fs = fs
        self._staged: list[tuple[Path, Path]] = []

    def stage(self, table: pa.Table, target: Path) -> int:
        """Write ``table`` hidden beside ``target``; returns its size in bytes."""
        tmp = _write_hidden(table, target, self._fs)
        self._staged.append((tmp, target))
        return tmp.stat().st_size

    def withdraw(self, target: Path) -> None:
        """Drop what was staged for ``target`` (its rows are about to be staged again, complete)."""
        for tmp, staged_for in self._staged:
            if staged_for == target:
                tmp.unlink(missing_ok=True)
        self._staged = [(tmp, staged_for) for tmp, staged_for in self._staged if staged_for != target]

    def publish(self) -> None:
        """Place every staged file (``consolidation.place_part``: renamed, or merged into a day file that already
        holds its segment), then fsync the folders."""
        try:
            for tmp, target in self._staged:
                place_part(tmp, target, self._fs)
            for folder in sorted({target.parent for _, target in self._staged}):
                self._fs.fsync_dir(folder)
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove whatever is still staged (a failed run leaves nothing visible)."""
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged = []

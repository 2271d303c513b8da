"""Daily consolidation: merge one date x symbol x kind's per-segment parts into one sorted, deduplicated day file.

Layout and what readers see
    ``kind=KIND/`` holds either the per-segment ``part-<segment>.parquet`` files written by compaction, or one
    ``day-<version>.parquet`` (plus its ``day-<version>.json`` manifest) and any parts that arrived after it. Readers
    glob ``kind=KIND/*.parquet``; a part is deleted in the same atomic step that makes the day file containing its
    rows visible, so the glob never counts a row twice (rows duplicated *across* parts, e.g. two overlapping
    connections, are removed by the day file and by every feature query's own dedup on exchange ids).

The atomic step
    The day file is written into a hidden sibling ``.kind=KIND.staging-<uuid>/`` (readers' ``kind=*`` globs skip
    names starting with a dot), fsynced, then swapped with ``kind=KIND/`` in one ``renameat2(RENAME_EXCHANGE)`` call
    (Linux). Until that call the parts are the source of truth and untouched; after it, readers see the day file.
    Parts written by compaction while the merge ran (not in the snapshot) are moved from the swapped-out directory
    into the new one, then the old directory is deleted. A crash anywhere leaves a hidden directory that the next
    consolidation of the same kind resolves: files named in the visible manifest are already merged, anything else is
    moved back into view. A reader that listed the directory before the swap and opens a file after it gets
    "file not found" and must simply retry.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from harvest_pipeline.features.sources import kind_dir, read_parquet_sql, visible_files

DEDUP_KEYS: dict[str, tuple[str, ...]] = {
    "prices": ("agg_trade_id",),
    "orderbook": ("final_update_id",),
    "bookticker": ("update_id",),
    "depth_snapshot": ("last_update_id",),
    "events": ("segment", "line"),
}
"""The identity of a row per kind: exchange ids for market data, provenance (segment, line) for ledger records."""

DAY_FILE_PREFIX = "day-"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass(frozen=True)
class ConsolidationResult:
    """What one consolidation found and wrote (counts are rows)."""

    kind: str
    rows_in: int
    rows_out: int
    duplicates_removed: int
    duplicates_after: int
    sources: list[str]
    day_file: str | None

    @property
    def duplicate_rate(self) -> float:
        """Share of input rows that were duplicates of another row (0 when there was no input)."""
        return self.duplicates_removed / self.rows_in if self.rows_in else 0.0


def consolidate(parquet_root: Path, day: dt.date, symbol: str, kind: str) -> ConsolidationResult:
    """Merge the visible files of one date x symbol x kind into one day file; a no-op when already consolidated."""
    directory = kind_dir(parquet_root, day, symbol, kind)
    recover_interrupted(directory)
    snapshot = visible_files(directory)
    if not snapshot:
        return ConsolidationResult(kind, 0, 0, 0, 0, [], None)
    if len(snapshot) == 1 and snapshot[0].name.startswith(DAY_FILE_PREFIX):
        return _read_manifest(snapshot[0])
    staging = directory.with_name(f".{directory.name}.staging-{uuid.uuid4().hex}")
    staging.mkdir()
    try:
        result = _write_day_file(snapshot, staging, kind)
        _exchange(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _move_late_parts(staging, directory, set(result.sources))
    shutil.rmtree(staging)
    return result


def recover_interrupted(directory: Path) -> None:
    """Finish what a crashed consolidation of ``directory`` left in hidden siblings, then remove them."""
    if not directory.parent.is_dir():
        return
    merged: set[str] = set()
    for manifest in directory.glob(f"{DAY_FILE_PREFIX}*.json"):
        merged.update(json.loads(manifest.read_text())["sources"])
    for leftover in directory.parent.glob(f".{directory.name}.staging-*"):
        _move_late_parts(leftover, directory, merged)
        shutil.rmtree(leftover)


def _write_day_file(snapshot: list[Path], staging: Path, kind: str) -> ConsolidationResult:
    """Deduplicate and sort the snapshot into ``staging/day-<version>.parquet`` plus its manifest; fsync both."""
    keys = ", ".join(DEDUP_KEYS[kind])
    version = hashlib.sha256("\n".join(f"{p.name}:{p.stat().st_size}" for p in snapshot).encode()).hexdigest()[:16]
    day_file = staging / f"{DAY_FILE_PREFIX}{version}.parquet"
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW snapshot AS SELECT * FROM {read_parquet_sql(snapshot)}")
        rows_in = con.execute("SELECT count(*) FROM snapshot").fetchone()[0]
        con.execute(
            f"""COPY (
                SELECT * FROM snapshot
                QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY recv_time_ns, segment, line) = 1
                ORDER BY event_time_ms, {keys}
            ) TO '{day_file}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"""
        )
        rows_out, distinct = con.execute(
            f"SELECT count(*), count(DISTINCT ({keys})) FROM {read_parquet_sql([day_file])}"
        ).fetchone()
    finally:
        con.close()
    result = ConsolidationResult(
        kind=kind,
        rows_in=rows_in,
        rows_out=rows_out,
        duplicates_removed=rows_in - rows_out,
        duplicates_after=rows_out - distinct,
        sources=[p.name for p in snapshot],
        day_file=day_file.name,
    )
    day_file.with_suffix(".json").write_text(json.dumps(asdict(result), indent=1))
    for path in (day_file, day_file.with_suffix(".json"), staging):
        _fsync(path)
    return result


def _read_manifest(day_file: Path) -> ConsolidationResult:
    return ConsolidationResult(**json.loads(day_file.with_suffix(".json").read_text()))


def _move_late_parts(source: Path, target: Path, merged: set[str]) -> None:
    """Move Parquet files of ``source`` that are not already merged (nor a day file) into ``target``."""
    for path in visible_files(source):
        if path.name not in merged and not path.name.startswith(DAY_FILE_PREFIX):
            os.rename(path, target / path.name)


def _exchange(a: Path, b: Path) -> None:
    """Atomically swap two directories (Linux ``renameat2(RENAME_EXCHANGE)``), then fsync their parent."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        raise OSError(f"cannot consolidate {b}: this platform has no renameat2(RENAME_EXCHANGE) (Linux only)")
    if libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot swap {a} with {b}: {os.strerror(err)}")
    _fsync(b.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

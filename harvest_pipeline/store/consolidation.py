"""Daily consolidation: merge one date x symbol x kind's per-segment parts into one sorted, deduplicated day file,
and the placement of newly compacted parts (next to the day file, or merged into it when it already holds their
segment).

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

Exactly once, in any order
    A day file's manifest names every part it ever merged (carried forward by later merges). A part compacted again
    for a segment the day file already holds is merged into a new day file (the segment's old rows replaced by the
    new ones) instead of being placed beside it. Compaction's placement and consolidation hold the partition's lock
    (``flock`` on a hidden sibling file), so they never interleave on one directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from harvest_pipeline.segments import LOCAL_FS, FileSystem
from harvest_pipeline.store.identity import AGREEING_COLUMNS, DEDUP_KEYS, KEEP_FIRST
from harvest_pipeline.store.layout import (
    DAY_FILE_PREFIX,
    PART_PREFIX,
    kind_dir,
    kind_select_sql,
    read_parquet_sql,
    sql_literal,
    visible_files,
)

MAX_LISTED_DISAGREEMENTS = 100
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
    rest_disagreements: int = 0
    """REST rows dropped for a websocket row of the same id with other values (``AGREEING_COLUMNS``)."""
    disagreeing_ids: list[int] = field(default_factory=list)
    """The first ``MAX_LISTED_DISAGREEMENTS`` of their ids."""

    @property
    def duplicate_rate(self) -> float:
        """Share of input rows that were duplicates of another row (0 when there was no input)."""
        return self.duplicates_removed / self.rows_in if self.rows_in else 0.0


def consolidate(parquet_root: Path, day: dt.date, symbol: str, kind: str) -> ConsolidationResult:
    """Merge the visible files of one date x symbol x kind into one day file; a no-op when already consolidated."""
    directory = kind_dir(parquet_root, day, symbol, kind)
    with partition_lock(directory):
        return _consolidate(directory, kind, None)


def place_part(staged: Path, target: Path, fs: FileSystem = LOCAL_FS) -> None:
    """Make the staged part ``staged`` visible as ``target``: renamed into place, or, when the visible day file
    already merged a part of that name, merged into a new day file that replaces that segment's rows."""
    directory = target.parent
    with partition_lock(directory):
        recover_interrupted(directory)
        if target.name in _merged_names(visible_files(directory)):
            _consolidate(directory, directory.name.removeprefix("kind="), (target.name, staged))
        else:
            fs.replace(staged, target)


@contextlib.contextmanager
def partition_lock(directory: Path) -> Iterator[None]:
    """Hold the lock of one kind directory (a hidden sibling file, so it survives the directory exchange)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory.parent / f".lock.{directory.name}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _consolidate(directory: Path, kind: str, replacing: tuple[str, Path] | None) -> ConsolidationResult:
    recover_interrupted(directory)
    snapshot = visible_files(directory)
    if not snapshot and replacing is None:
        return ConsolidationResult(kind, 0, 0, 0, 0, [], None)
    if replacing is None and len(snapshot) == 1 and snapshot[0].name.startswith(DAY_FILE_PREFIX):
        return _read_manifest(snapshot[0])
    staging = directory.with_name(f".{directory.name}.staging-{uuid.uuid4().hex}")
    staging.mkdir()
    try:
        result = _write_day_file(snapshot, staging, kind, replacing)
        _exchange(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _move_late_parts(staging, directory, set(result.sources))
    shutil.rmtree(staging)
    return result


def _merged_names(files: list[Path]) -> set[str]:
    """Names of every part the day files among ``files`` merged (from their manifests)."""
    merged: set[str] = set()
    for path in files:
        if path.name.startswith(DAY_FILE_PREFIX):
            merged.update(_read_manifest(path).sources)
    return merged


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


def _write_day_file(
    snapshot: list[Path], staging: Path, kind: str, replacing: tuple[str, Path] | None
) -> ConsolidationResult:
    """Deduplicate and sort the snapshot (with ``replacing``'s part instead of that segment's old rows) into
    ``staging/day-<version>.parquet`` plus its manifest; fsync both."""
    keys = ", ".join(DEDUP_KEYS[kind])
    inputs = snapshot + ([replacing[1]] if replacing else [])
    version = hashlib.sha256("\n".join(f"{p.name}:{p.stat().st_size}" for p in inputs).encode()).hexdigest()[:16]
    day_file = staging / f"{DAY_FILE_PREFIX}{version}.parquet"
    sources = sorted(_merged_names(snapshot) | {p.name for p in snapshot if p.name.startswith(PART_PREFIX)})
    if replacing is not None:
        sources = sorted({*sources, replacing[0]})
    con = duckdb.connect()
    try:
        if snapshot:
            con.execute(f"CREATE VIEW visible AS {kind_select_sql(snapshot, kind)}")
        if replacing is None:
            con.execute("CREATE VIEW snapshot AS SELECT * FROM visible")
        else:
            segment = replacing[0].removeprefix(PART_PREFIX).removesuffix(".parquet")
            old_rows = (
                f"SELECT * FROM visible WHERE segment <> {sql_literal(segment)} UNION ALL BY NAME " if snapshot else ""
            )
            con.execute(f"CREATE VIEW snapshot AS {old_rows}{kind_select_sql([replacing[1]], kind)}")
        [(rows_in,)] = con.execute("SELECT count(*) FROM snapshot").fetchall()
        disagreeing = _disagreeing_ids(con, kind)
        keep_first = f"{KEEP_FIRST[kind]}, " if kind in KEEP_FIRST else ""
        con.execute(
            f"""COPY (
                SELECT * FROM snapshot
                QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {keep_first}recv_time_ns, segment, line) = 1
                ORDER BY event_time_ms, {keys}
            ) TO {sql_literal(day_file)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"""
        )
        [(rows_out, distinct)] = con.execute(
            f"SELECT count(*), count(DISTINCT ({keys})) FROM {read_parquet_sql([day_file])}"
        ).fetchall()
    finally:
        con.close()
    result = ConsolidationResult(
        kind=kind,
        rows_in=rows_in,
        rows_out=rows_out,
        duplicates_removed=rows_in - rows_out,
        duplicates_after=rows_out - distinct,
        sources=sources,
        day_file=day_file.name,
        rest_disagreements=len(disagreeing),
        disagreeing_ids=disagreeing[:MAX_LISTED_DISAGREEMENTS],
    )
    day_file.with_suffix(".json").write_text(json.dumps(asdict(result), indent=1))
    for path in (day_file, day_file.with_suffix(".json"), staging):
        _fsync(path)
    return result


def _disagreeing_ids(con: duckdb.DuckDBPyConnection, kind: str) -> list[int]:
    """Ids (sorted) of the REST rows of view ``snapshot`` whose websocket row of the same id has other values."""
    columns = AGREEING_COLUMNS.get(kind)
    if not columns:
        return []
    [key] = DEDUP_KEYS[kind]
    differs = " OR ".join(f"w.{c} IS DISTINCT FROM r.{c}" for c in columns)
    rows = con.execute(
        f"""SELECT DISTINCT r.{key} FROM snapshot r JOIN snapshot w ON w.{key} = r.{key}
            WHERE r.source = 'rest' AND w.source = 'ws' AND ({differs}) ORDER BY 1"""
    ).fetchall()
    return [row[0] for row in rows]


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

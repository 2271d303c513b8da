"""Atomic, deterministic Parquet writes into ``date=YYYY-MM-DD/symbol=SYM/kind=KIND/part-<segment>.parquet``.

Each file is written to a hidden temp name in its final folder, fsynced, then renamed over the target, so readers see
the old file or the new one, never half of one, and re-running a segment replaces exactly its own files. Folders are
created by the write that needs them (a new UTC day needs nothing prepared in advance).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harvest_pipeline.segments import FileSystem

ROW_GROUP_ROWS = 256 * 1024
"""Rows per row group: large enough for zstd and scan throughput, small enough that a date/symbol query on one
segment file can skip by min/max time statistics."""
COMPRESSION = "zstd"


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


def partition_dir(parquet_root: Path, date: str, symbol: str, kind: str) -> Path:
    """The hive-partitioned folder of one date, symbol and kind."""
    return parquet_root / f"date={date}" / f"symbol={symbol}" / f"kind={kind}"


def part_name(segment: str) -> str:
    """The deterministic file name of a segment's rows in any partition."""
    return f"part-{segment}.parquet"


def write_partitioned(
    table: pa.Table, kind: str, schema: pa.Schema, time_column: str, segment: str, parquet_root: Path, fs: FileSystem
) -> list[WrittenFile]:
    """Write ``table`` (schema columns plus ``date`` and ``symbol``, sorted by them) one file per date and symbol."""
    if table.num_rows == 0:
        return []
    groups = (
        table.select(["date", "symbol"]).group_by(["date", "symbol"], use_threads=False).aggregate([([], "count_all")])
    )
    written, offset = [], 0
    for date, symbol, count in zip(*(groups.column(i).to_pylist() for i in range(3)), strict=True):
        part = table.slice(offset, count)
        offset += count
        target = partition_dir(parquet_root, date, symbol, kind) / part_name(segment)
        times = part.column(time_column)
        data = part.select(schema.names).cast(schema)
        write_parquet_atomically(data, target, fs)
        written.append(
            WrittenFile(
                kind,
                date,
                symbol,
                target,
                count,
                target.stat().st_size,
                pc.min(times).as_py(),
                pc.max(times).as_py(),
            )
        )
    return written


def write_parquet_atomically(table: pa.Table, target: Path, fs: FileSystem) -> None:
    """Temp file in the target folder, fsync, rename over ``target``."""
    fs.makedirs(target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            pq.write_table(table, handle, compression=COMPRESSION, row_group_size=ROW_GROUP_ROWS)
            handle.flush()
            os.fsync(handle.fileno())
        fs.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)

"""A compaction's rows of one kind, split by date and symbol, staged as part files of the Parquet store.

Where the files go, how they are written and how they become visible is the store's business
(``harvest_pipeline.store``); this module only splits a kind's table by its date and symbol columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def stage_partitioned(
    table: pa.Table,
    kind: str,
    schema: pa.Schema,
    time_column: str,
    segment: str,
    parquet_root: Path,
    publication: Publication,
) -> list[WrittenFile]:
    """Stage ``table`` (schema columns plus ``date`` and ``symbol``, sorted by them) one file per date and symbol."""
    if table.num_rows == 0:
        return []
    groups = (
        table.select(["date", "symbol"]).group_by(["date", "symbol"], use_threads=False).aggregate([([], "count_all")])
    )
    written, offset = [], 0
    for date, symbol, count in zip(*(groups.column(i).to_pylist() for i in range(3)), strict=True):
        part = table.slice(offset, count)
        offset += count
        target = kind_dir(parquet_root, date, symbol, kind) / part_name(segment)
        times = part.column(time_column)
        size = publication.stage(part.select(schema.names).cast(schema), target)
        written.append(
            WrittenFile(kind, date, symbol, target, count, size, pc.min(times).as_py(), pc.max(times).as_py())
        )
    return written

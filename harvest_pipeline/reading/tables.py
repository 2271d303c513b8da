"""The SQL of one kind over the files of some days x symbols: every row once, with its ``date`` and ``symbol``.

A day x symbol folder with one visible file is read as it is: a consolidated day file is deduplicated by
construction, a single segment's part too (compaction keeps the first of each id), and a derived kind is one file.
Only folders with several files (a day still in parts, or parts placed beside a day file) pay for deduplication:
``row_number()`` over the kind's identity, the rule consolidation uses (``KEEP_FIRST``, then receive order). Rows
come in date, symbol and file order (each file is sorted by time); with deduplication, ordered by date, symbol and the
kind's time column.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from harvest_pipeline.reading.kinds import ReadableKind
from harvest_pipeline.store.layout import COLUMNS_ADDED_LATER, sql_literal

PARTITION_COLUMNS = ("date", "symbol")


@dataclass(frozen=True)
class FolderFiles:
    """The visible files of one day x symbol folder (local paths or ``s3://`` URLs)."""

    day: dt.date
    symbol: str
    files: list[str]


VisibleFiles = Callable[[dt.date, str, str], list[str]]
"""``(day, symbol, kind folder) -> the files a reader sees there``."""
SchemaOf = Callable[[str], pa.Schema]


def folder_files(
    visible: VisibleFiles, kind: ReadableKind, days: list[dt.date], symbols: list[str]
) -> list[FolderFiles]:
    """The non-empty folders of ``kind`` for every day x symbol, in date then symbol order."""
    found = []
    for day in days:
        for symbol in symbols:
            files = visible(day, symbol, kind.folder)
            if files:
                found.append(FolderFiles(day, symbol, files))
    return found


def table_sql(kind: ReadableKind, folders: list[FolderFiles], where: str, schema_of: SchemaOf) -> str | None:
    """One SELECT of ``kind``'s columns plus ``date`` and ``symbol`` over ``folders``, rows kept by ``where``
    (SQL over the columns); None when there are no files."""
    single = [f.files[0] for f in folders if len(f.files) == 1]
    several = [path for f in folders if len(f.files) > 1 for path in f.files]
    parts = []
    if single:
        parts.append(f"SELECT * FROM ({_select(kind, single, schema_of)}) WHERE {where}")
    if several:
        parts.append(f"SELECT * FROM ({_deduplicated(kind, several, schema_of)}) WHERE {where}")
    if not parts:
        return None
    if len(parts) == 1 and not several:
        return parts[0]
    order = ", ".join(["date", "symbol", *([kind.time_column] if kind.time_column else []), *kind.keys])
    return f"SELECT * FROM ({' UNION ALL '.join(parts)}) ORDER BY {order}"


def _deduplicated(kind: ReadableKind, files: list[str], schema_of: SchemaOf) -> str:
    return f"SELECT * FROM ({_select(kind, files, schema_of)}) QUALIFY {first_of_identity(kind)}"


def first_of_identity(kind: ReadableKind) -> str:
    """The condition keeping one row per identity (date, symbol, the kind's keys): ``KEEP_FIRST``, then receive
    order, the rule consolidation uses."""
    keep_first = f"{kind.keep_first}, " if kind.keep_first else ""
    partition = ", ".join([*PARTITION_COLUMNS, *kind.keys])
    return f"row_number() OVER (PARTITION BY {partition} ORDER BY {keep_first}recv_time_ns, segment, line) = 1"


def _select(kind: ReadableKind, files: list[str], schema_of: SchemaOf) -> str:
    """The schema's columns over ``files`` whatever version of the schema each was written with (a column a file
    lacks reads as its ``COLUMNS_ADDED_LATER`` value, else NULL), then ``date`` and ``symbol`` from the path."""
    present = [set(schema_of(path).names) for path in files]
    columns = []
    for field in kind.schema:
        name = field.name
        if all(name in found for found in present):
            columns.append(f'"{name}"')
            continue
        default = COLUMNS_ADDED_LATER.get((kind.folder, name), f"NULL::{_sql_type(field.type)}")
        columns.append(f'coalesce("{name}", {default}) AS "{name}"' if any(name in f for f in present) else
                       f'{default} AS "{name}"')  # fmt: skip
    listed = ", ".join(sql_literal(path) for path in files)
    union = ", union_by_name = true" if any(found != present[0] for found in present) else ""
    hive = "hive_partitioning = true, hive_types = {'date': DATE, 'symbol': VARCHAR}"
    source = f"read_parquet([{listed}], {hive}{union})"
    return f"SELECT {', '.join(columns)}, date, symbol FROM {source}"


def _sql_type(arrow: pa.DataType) -> str:
    """DuckDB's name of a flat Arrow type (the types of columns added to a schema later)."""
    names = {pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
             pa.string(): "VARCHAR"}  # fmt: skip
    if arrow in names:
        return names[arrow]
    if pa.types.is_decimal(arrow):
        return f"DECIMAL({arrow.precision}, {arrow.scale})"
    raise ValueError(f"no NULL default for a column of type {arrow}")


def empty_table(kind: ReadableKind) -> pa.Table:
    """No rows of ``kind``, with its columns and the partition columns."""
    fields = [*kind.schema, pa.field("date", pa.date32()), pa.field("symbol", pa.string())]
    return pa.schema(fields).empty_table()

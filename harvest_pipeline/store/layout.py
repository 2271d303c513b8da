"""Where each date x symbol x kind lives, which files a reader sees, and safe names and literals for them."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pyarrow.parquet as pq

from harvest_pipeline.schema import ALL_SYMBOLS, RAW_KINDS
from harvest_pipeline.symbols import validate_symbol

DAY_FILE_PREFIX = "day-"
PART_PREFIX = "part-"
KIND_PATTERN = re.compile(r"^[a-z0-9_]{1,40}$")


def symbol_folder(symbol: str) -> str:
    """``symbol`` if it may name a folder (the symbol rule, or ``ALL`` for events of no one symbol), else
    ``ValueError``: nothing from any input reaches a path unchecked."""
    return symbol if symbol == ALL_SYMBOLS else validate_symbol(symbol)


def validate_date(day: dt.date | str) -> str:
    """``YYYY-MM-DD`` of ``day`` (a date or its ISO text), else ``ValueError``."""
    if isinstance(day, dt.date):
        return day.isoformat()
    try:
        return dt.date.fromisoformat(day).isoformat()
    except (TypeError, ValueError):
        raise ValueError(f"date {day!r} is invalid: expected YYYY-MM-DD") from None


def kind_dir(parquet_root: Path, day: dt.date | str, symbol: str, kind: str) -> Path:
    """The hive directory of one date x symbol x kind: ``date=YYYY-MM-DD/symbol=SYM/kind=KIND``."""
    if not KIND_PATTERN.match(kind):
        raise ValueError(f"kind {kind!r} is invalid")
    return parquet_root / f"date={validate_date(day)}" / f"symbol={symbol_folder(symbol)}" / f"kind={kind}"


def part_name(segment: str) -> str:
    """The deterministic file name of a segment's rows in any partition."""
    return f"{PART_PREFIX}{segment}.parquet"


def visible_files(directory: Path) -> list[Path]:
    """The Parquet files a reader sees in one kind directory, in name order (hidden and temp files excluded)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))


def sql_literal(path: Path | str) -> str:
    """``path`` as a single-quoted SQL string literal (quotes doubled): the only way a path enters SQL."""
    return "'" + str(path).replace("'", "''") + "'"


def read_parquet_sql(files: list[Path]) -> str:
    """A ``read_parquet([...])`` table expression over exactly these files (hive columns off: they live in the path)."""
    return f"read_parquet([{', '.join(sql_literal(path) for path in files)}], hive_partitioning = false)"


COLUMNS_ADDED_LATER: dict[tuple[str, str], str] = {("prices", "source"): "'ws'"}
"""(kind, column) -> the SQL value a file written before the column existed reads as."""


def kind_select_sql(files: list[Path], kind: str) -> str:
    """``SELECT`` of exactly the columns of ``kind``'s schema over ``files``, in schema order, whatever version of the
    schema each file was written with (a column added later reads as its ``COLUMNS_ADDED_LATER`` value).

    Files that all have the same columns (every day written since the last column was added) are read with a plain
    ``read_parquet``, which DuckDB binds from one file's footer. Only a mix of versions needs ``union_by_name``: its
    every bind (creating a view, then each statement using it) reads all the footers again, 1,440 for a day of
    one-minute parts."""
    present = [set(pq.read_schema(path).names) for path in files]
    columns = []
    for name in RAW_KINDS[kind].names:
        default = COLUMNS_ADDED_LATER.get((kind, name))
        if default is None or all(name in found for found in present):
            columns.append(f'"{name}"')
        elif any(name in found for found in present):
            columns.append(f'coalesce("{name}", {default}) AS "{name}"')
        else:
            columns.append(f'{default} AS "{name}"')
    source = read_parquet_sql(files)
    if any(found != present[0] for found in present):
        source = source.removesuffix(")") + ", union_by_name = true)"
    return f"SELECT {', '.join(columns)} FROM {source}"

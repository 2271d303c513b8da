"""SQL views of the store: one per readable kind and market, for ``harvest sql`` and the catalog file.

A view reads its kind through a glob over every day x symbol folder of a market, so a file that appears later (a new
day, symbol or part) is read without redefining the view; only a kind or a market that had no file yet needs the
statements again (a glob that matches nothing fails when the view is bound, so such a kind gets no view). Each view
has exactly the kind's schema columns plus ``date`` and ``symbol``, whatever version of the schema each file was
written with, and the raw kinds are deduplicated by their identity with the rule of ``tables.py`` and consolidation.

Views live in a schema per market (``usdm.prices``, ``spot.prices`` ...); the default market's are also in ``main``
(``prices``). The catalog file ``<data root>/catalog.duckdb`` holds the same views for any DuckDB client to attach
read-only (written by the Dagster asset ``reading_catalog``). ``docs/reading.md``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa

from harvest_pipeline.markets import MARKETS, market
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.reading.kinds import DAILY_SUFFIX, READABLE_KINDS, ReadableKind
from harvest_pipeline.reading.store import Store
from harvest_pipeline.reading.tables import PARTITION_COLUMNS, first_of_identity
from harvest_pipeline.store.layout import COLUMNS_ADDED_LATER, sql_literal
from harvest_pipeline.store.migration import move_legacy_layout

VIEW_KINDS = {name: kind for name, kind in READABLE_KINDS.items() if not name.endswith(DAILY_SUFFIX)}
"""The kinds that get a view. A ``*_daily`` name is an alias of its raw kind (the same folder, before consolidation
the parts, after it the day file): it needs no view of its own."""
VISIBLE_PARQUET = "[!.]*.parquet"
"""The files a reader sees in a kind folder, as a glob both ``pathlib`` and DuckDB understand: ``*.parquet`` without
hidden files (``harvest_pipeline.store.layout.visible_files``; temp files end in ``.staged``)."""
DEFAULT_SCHEMA = "main"
CATALOG_FILE = "catalog.duckdb"
CATALOG_STORAGE_VERSION = "v1.0.0"
"""The catalog file is written in the oldest storage format its views need, so DuckDB 1.x clients open it too."""


def catalog_statements(parquet_area: Path, default_market: str) -> list[str]:
    """``CREATE SCHEMA`` and ``CREATE OR REPLACE VIEW`` statements for every readable kind with files, per market
    present under ``parquet_area`` (the installation's Parquet area, after ``move_legacy_layout``); the views of
    ``default_market`` also in ``main``."""
    market(default_market)  # an unknown market is a ValueError naming the known ones
    area = parquet_area.absolute()  # views outlive the working directory: DBeaver attaches from anywhere
    statements = []
    for name in MARKETS:
        root = market(name).parquet_root(area)
        kinds = {view: kind for view, kind in VIEW_KINDS.items() if _has_files(root, kind)}
        if not kinds:
            continue
        statements.append(f"CREATE SCHEMA IF NOT EXISTS {name}")
        for view, kind in kinds.items():
            select = view_sql(root, kind)
            statements.append(f"CREATE OR REPLACE VIEW {name}.{view} AS {select}")
            if name == default_market:
                statements.append(f"CREATE OR REPLACE VIEW {DEFAULT_SCHEMA}.{view} AS {select}")
    return statements


def view_sql(market_root: Path, kind: ReadableKind) -> str:
    """The SELECT of one view: ``kind``'s schema columns, ``date`` and ``symbol`` over every visible file of the
    kind under ``market_root``, each row once when the kind has an identity."""
    pattern = market_root / "date=*" / "symbol=*" / f"kind={kind.folder}" / VISIBLE_PARQUET
    hive = "hive_partitioning = true, hive_types = {'date': DATE, 'symbol': VARCHAR}"
    files = f"SELECT * FROM read_parquet({sql_literal(pattern)}, {hive}, union_by_name = true)"
    columns = ", ".join([*_columns(kind), *PARTITION_COLUMNS])
    select = f"SELECT {columns} FROM ({files} UNION ALL BY NAME {_no_rows(kind)})"
    if not kind.keys:
        return select
    return f"SELECT * FROM ({select}) QUALIFY {first_of_identity(kind)}"


def _columns(kind: ReadableKind) -> list[str]:
    """The schema's columns; one added later reads as its ``COLUMNS_ADDED_LATER`` value in files written before."""
    columns = []
    for field in kind.schema:
        default = COLUMNS_ADDED_LATER.get((kind.folder, field.name))
        quoted = f'"{field.name}"'
        columns.append(quoted if default is None else f"coalesce({quoted}, {default}) AS {quoted}")
    return columns


def _no_rows(kind: ReadableKind) -> str:
    """No rows, with every schema column typed: united by name with the files, a column no file has yet reads as NULL
    (``union_by_name`` alone only fills a column some file has)."""
    nulls = ", ".join(f'NULL::{sql_type} AS "{name}"' for name, sql_type in _duckdb_types(kind.schema))
    return f"(SELECT {nulls} WHERE false)"


def _duckdb_types(schema: pa.Schema) -> list[tuple[str, str]]:
    """Each column's name and DuckDB type as DuckDB reads it from Parquet written with this Arrow schema."""
    with duckdb.connect() as con:
        types = con.from_arrow(schema.empty_table()).types
    return [(field.name, str(sql_type)) for field, sql_type in zip(schema, types, strict=True)]


def _has_files(market_root: Path, kind: ReadableKind) -> bool:
    return next(market_root.glob(f"date=*/symbol=*/kind={kind.folder}/{VISIBLE_PARQUET}"), None) is not None


def define_views(connection: duckdb.DuckDBPyConnection, paths: DataPaths, default_market: str) -> list[str]:
    """Move a legacy store into its market root, run ``catalog_statements`` on ``connection``; the views defined."""
    move_legacy_layout(paths.parquet)
    for statement in catalog_statements(paths.parquet, default_market):
        connection.execute(statement)
    return defined_views(connection)


def define_snapshot_views(store: Store) -> list[str]:
    """On ``store``'s connection, one view per kind with files and market of a store read from a bucket: over the
    files its manifests list at this moment (a later publication needs the views again: a new ``harvest sql``)."""
    connection = store.connection
    for name in store.markets():
        for view in VIEW_KINDS:
            sql = store.table_sql(view, market=name)
            if sql is None:
                continue
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {name}")
            connection.execute(f"CREATE OR REPLACE VIEW {name}.{view} AS {sql}")
            if name == store.market.name:
                connection.execute(f"CREATE OR REPLACE VIEW {DEFAULT_SCHEMA}.{view} AS {sql}")
    return defined_views(connection)


def defined_views(connection: duckdb.DuckDBPyConnection) -> list[str]:
    """The views of ``connection``'s default database: ``prices`` for ``main``'s, ``usdm.prices`` for the others."""
    rows = connection.sql(
        "SELECT schema_name, view_name FROM duckdb_views() "
        "WHERE NOT internal AND database_name = current_database() "
        f"ORDER BY schema_name <> '{DEFAULT_SCHEMA}', schema_name, view_name"
    ).fetchall()
    return [view if schema == DEFAULT_SCHEMA else f"{schema}.{view}" for schema, view in rows]


def catalog_path(paths: DataPaths) -> Path:
    """``<data root>/catalog.duckdb``."""
    return paths.root / CATALOG_FILE


def write_catalog(paths: DataPaths, default_market: str) -> list[str]:
    """Write the views into a new DuckDB file beside the catalog and rename it over the catalog (a reader holding
    the old file keeps reading it; DuckDB allows one writer per file); the views defined."""
    target = catalog_path(paths)
    staged = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.staged")
    wal = staged.with_name(f"{staged.name}.wal")
    try:
        with duckdb.connect(str(staged), config={"storage_compatibility_version": CATALOG_STORAGE_VERSION}) as con:
            views = define_views(con, paths, default_market)
        with open(staged, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)
        wal.unlink(missing_ok=True)
    return views

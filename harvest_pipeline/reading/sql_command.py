"""`harvest sql [-c "SQL; SQL"]`: SQL over the store, a view per kind (``prices``, ``usdm.prices``, ``features_1s``).

The views (``harvest_pipeline.reading.views``) are defined on an in-memory DuckDB connection, then ``-c`` runs its
statements and prints each result as a text table (exit 1 on the first SQL error, printed without a traceback), or,
without ``-c``, an interactive shell reads statements from stdin. ``--catalog`` prints where the catalog file the
Dagster asset ``reading_catalog`` writes lives and how to attach it from any DuckDB client. ``docs/reading.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb

from harvest_pipeline.markets import MARKETS
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.reading.store import open as hp_open
from harvest_pipeline.reading.views import catalog_path, define_snapshot_views, define_views, defined_views
from harvest_pipeline.settings import load_settings
from harvest_pipeline.store.layout import sql_literal

PROMPT = "harvest> "
CONTINUATION = "    ...> "
MAX_ROWS = 1000
"""Rows printed of one result unless ``--max-rows`` says otherwise; a longer result says it was cut."""
MAX_ROWS_LIMIT = 10_000
"""The most rows DuckDB's table renderer draws of one relation."""
_RESULT = "harvest_sql_result"
_SHOWN = "harvest_sql_shown"
"""The registered result of a statement and the temporary table of the rows printed of it (dropped after)."""
FULL_WIDTH = 1_000_000
"""Characters a result line may take: every column is printed (``less -S`` scrolls wide ones)."""
HISTORY_FILE = Path.home() / ".harvest_sql_history"
HISTORY_LENGTH = 1000
HELP = """\
end a statement with ; (it may span lines)
.tables  list the views (prices: the default market's; usdm.prices, spot.prices ...: each market's)
.help    this text
.quit    leave (or Ctrl-D)"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sql`` subcommand."""
    parser = subparsers.add_parser("sql", help="query the store with SQL: one view per kind (prices, features_1s ...)")
    parser.add_argument(
        "-c",
        dest="sql",
        metavar="SQL",
        help='statements to run, separated by ";" (without -c: an interactive shell on stdin)',
    )
    parser.add_argument(
        "--data", help="data root (default: HARVEST_DATA_ROOT or ./data), or s3://bucket/prefix of a published store"
    )
    parser.add_argument(
        "--market", choices=sorted(MARKETS), help="market of the unqualified views (default: the installation's)"
    )
    parser.add_argument(
        "--max-rows",
        type=row_limit,
        default=MAX_ROWS,
        help=f"rows printed of each result, 1 to {MAX_ROWS_LIMIT} (default {MAX_ROWS})",
    )
    parser.add_argument(
        "--catalog", action="store_true", help="print the path of the catalog file and how to attach it, then exit"
    )
    parser.set_defaults(run=run)


def row_limit(text: str) -> int:
    """``--max-rows``: a whole number from 1 to ``MAX_ROWS_LIMIT``."""
    if text.isdigit() and 1 <= int(text) <= MAX_ROWS_LIMIT:
        return int(text)
    raise argparse.ArgumentTypeError(f"invalid row count {text!r}: expected 1 to {MAX_ROWS_LIMIT}")


def run(args: argparse.Namespace) -> int:
    """``--catalog``, ``-c`` or the shell; exit code 1 when a statement failed (``-c``) or the catalog is missing."""
    if args.data is not None and args.data.startswith("s3://") and not args.catalog:
        return run_on_bucket(args)
    try:
        settings = load_settings({"data_root": args.data, "market": args.market})
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    paths = settings.paths()
    if args.catalog:
        return print_catalog(paths)
    with duckdb.connect() as con:
        views = define_views(con, paths, settings.market)
        if not views:
            print(f"no Parquet files under {paths.parquet}: no views defined", file=sys.stderr)
        if args.sql is not None:
            return 0 if run_statements(con, args.sql, args.max_rows) else 1
        return shell(con, len(views), args.max_rows)


def run_on_bucket(args: argparse.Namespace) -> int:
    """``-c`` or the shell over a store published to a bucket (``--data s3://bucket/prefix``): views over what its
    manifests list when the command starts."""
    try:
        store = hp_open(args.data, args.market)
        views = define_snapshot_views(store)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not views:
        print(f"nothing published under {args.data}: no views defined", file=sys.stderr)
    if args.sql is not None:
        return 0 if run_statements(store.connection, args.sql, args.max_rows) else 1
    return shell(store.connection, len(views), args.max_rows)


def print_catalog(paths: DataPaths) -> int:
    """Where the catalog file is and how to attach it; 1 when it has not been written yet."""
    path = catalog_path(paths)
    print(path)
    print(f"DuckDB:  ATTACH {sql_literal(path)} AS harvest (READ_ONLY); SELECT count(*) FROM harvest.prices;")
    print(f"Python:  duckdb.connect({str(path)!r}, read_only=True).sql('SELECT count(*) FROM usdm.prices')")
    if path.exists():
        return 0
    print("not written yet: materialize the Dagster asset reading_catalog (group reading)", file=sys.stderr)
    return 1


def run_statements(con: duckdb.DuckDBPyConnection, text: str, max_rows: int) -> bool:
    """Run each statement of ``text`` in order, printing each result; False at the first error (printed)."""
    try:
        for statement in con.extract_statements(text):
            print_result(con, statement, con.sql(statement.query), max_rows)
    except duckdb.Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def print_result(
    con: duckdb.DuckDBPyConnection,
    statement: duckdb.Statement,
    result: duckdb.DuckDBPyRelation | None,
    max_rows: int,
) -> None:
    """A query's rows as a table (at most ``max_rows``, saying so when there are more); a plan as text; nothing for
    a statement that returned no rows and is no query (``CREATE``, ``SET``).

    The rows shown are kept in a temporary table, so the statement runs once and every value keeps its DuckDB type
    (an Arrow round trip would turn ``TIMETZ`` into ``TIME``)."""
    if result is None:
        return
    if statement.type == duckdb.StatementType.EXPLAIN:
        for row in result.fetchall():
            print(row[-1])
        return
    con.register(_RESULT, result.limit(max_rows + 1))
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_SHOWN} AS FROM {_RESULT}")
    finally:
        con.unregister(_RESULT)
    try:
        shown = con.table(f"temp.main.{_SHOWN}")
        [(count,)] = shown.count("*").fetchall()
        if not count and statement.type != duckdb.StatementType.SELECT:
            return
        shown.limit(max_rows).show(max_width=FULL_WIDTH, max_rows=max_rows)
        if count > max_rows:
            print(f"(more than {max_rows} rows: the first {max_rows} shown; add a LIMIT or raise --max-rows)")
    finally:
        con.execute(f"DROP TABLE IF EXISTS temp.main.{_SHOWN}")


def shell(con: duckdb.DuckDBPyConnection, view_count: int, max_rows: int) -> int:
    """Read statements from stdin until ``.quit`` or end of input; errors are printed and the shell goes on."""
    history = _start_history()
    print(f"harvest sql: {view_count} views (.tables lists them, .help); end a statement with ;")
    lines: list[str] = []
    try:
        while True:
            try:
                line = input(CONTINUATION if lines else PROMPT)
            except EOFError:
                print()
                break
            except KeyboardInterrupt:
                print()
                lines.clear()
                continue
            if not lines and line.strip().startswith("."):
                if not dot_command(con, line.strip()):
                    break
                continue
            lines.append(line)
            if statement_complete("\n".join(lines)):
                _run_interruptible(con, "\n".join(lines), max_rows)
                lines.clear()
        if "".join(lines).strip():
            _run_interruptible(con, "\n".join(lines), max_rows)
    finally:
        if history is not None:
            history()
    return 0


def dot_command(con: duckdb.DuckDBPyConnection, command: str) -> bool:
    """Run one shell command (``.tables``, ``.help``, ``.quit``); False when the shell should end."""
    if command in (".quit", ".exit"):
        return False
    if command == ".tables":
        print("\n".join(defined_views(con)) or "(no views: the store has no Parquet files)")
    elif command == ".help":
        print(HELP)
    else:
        print(f"unknown command {command!r}: .tables, .help or .quit", file=sys.stderr)
    return True


def statement_complete(text: str) -> bool:
    """Whether ``text`` ends a statement: a ``;`` at the end of a line, outside a quoted string."""
    return text.rstrip().endswith(";") and text.count("'") % 2 == 0


def _run_interruptible(con: duckdb.DuckDBPyConnection, text: str, max_rows: int) -> None:
    try:
        run_statements(con, text, max_rows)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)


def _start_history() -> Callable[[], None] | None:
    """Line editing and a history file when stdin is a terminal and readline exists; returns what saves it."""
    if not sys.stdin.isatty():
        return None
    try:
        import readline
    except ImportError:
        return None
    with contextlib.suppress(OSError):
        readline.read_history_file(HISTORY_FILE)
    readline.set_history_length(HISTORY_LENGTH)

    def save() -> None:
        with contextlib.suppress(OSError):
            readline.write_history_file(HISTORY_FILE)

    return save

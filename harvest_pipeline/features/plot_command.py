"""`harvest plot --symbol S --date D [--kind K]`: draw one day's table from the Parquet store as a PNG.

``features_1s`` is drawn by the same function as the asset's ``chart.png`` (with the book's depth when the day's
``book_1s`` exists); ``book_1s`` shows best bid and ask, spread and depth (``harvest_pipeline.features.chart``).
The PNG goes to ``<data root>/plots/<market>/<SYMBOL>-<date>-<kind>.png`` unless ``--out`` says where.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from harvest_pipeline.atomic_write import write_bytes_atomically
from harvest_pipeline.book import book_file
from harvest_pipeline.features.chart import (
    BOOK_CHART_COLUMNS,
    FEATURES_CHART_COLUMNS,
    read_columns,
    read_day_book_depth,
    render_book_chart,
    render_features_chart,
)
from harvest_pipeline.features.command import symbol_name, utc_date
from harvest_pipeline.features.sources import BOOK_KIND
from harvest_pipeline.features.table import FEATURES_KIND, features_path
from harvest_pipeline.markets import DEFAULT_MARKET, MARKETS, market
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.store.migration import move_legacy_layout

PLOTS_DIR = "plots"
"""Default home of the PNGs, under the data root."""


@dataclass(frozen=True)
class PlotKind:
    """A table ``harvest plot`` can draw: where it lives, what is read of it, and what builds it."""

    path: Callable[[Path, dt.date, str], Path]
    columns: tuple[str, ...]
    counted: str
    """The boolean column whose true seconds the summary line counts."""
    builders: str
    """How to build a missing day; ``{date}``, ``{symbol}``, ``{partition}`` and ``{market_flag}`` are filled in."""


PLOT_KINDS = {
    FEATURES_KIND: PlotKind(
        path=features_path,
        columns=FEATURES_CHART_COLUMNS,
        counted="recorded",
        builders="materialize the Dagster asset features_1s (partition {partition}) or run "
        "`harvest features --date {date} --symbol {symbol}{market_flag} --write`",
    ),
    BOOK_KIND: PlotKind(
        path=lambda root, day, symbol: book_file(root, day, symbol, BOOK_KIND),
        columns=BOOK_CHART_COLUMNS,
        counted="valid",
        builders="materialize the Dagster asset book_1s (partition {partition}) once the day's orderbook and "
        "depth_snapshot are compacted",
    ),
}
COUNTED_LABELS = {"recorded": "seconds recorded", "valid": "seconds with a valid book"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``plot`` subcommand."""
    parser = subparsers.add_parser("plot", help="draw one day x symbol of features_1s or book_1s as a PNG")
    parser.add_argument("--symbol", required=True, type=symbol_name, help="symbol as recorded, e.g. BTCUSDT")
    parser.add_argument("--date", required=True, type=utc_date, help="UTC date, YYYY-MM-DD")
    parser.add_argument(
        "--kind", default=FEATURES_KIND, choices=list(PLOT_KINDS), help=f"table to draw (default {FEATURES_KIND})"
    )
    parser.add_argument("--market", default=DEFAULT_MARKET, choices=sorted(MARKETS), help="market (default usdm)")
    parser.add_argument("--data", help="data root (default: HARVEST_DATA_ROOT or ./data)")
    parser.add_argument(
        "--out", type=Path, help="PNG to write (default <data root>/plots/<market>/<SYMBOL>-<date>-<kind>.png)"
    )
    parser.set_defaults(run=run)


def plot_path(paths: DataPaths, market_name: str, symbol: str, day: dt.date, kind: str) -> Path:
    """The default PNG of one day x symbol x kind: ``<data root>/plots/<market>/<SYMBOL>-<date>-<kind>.png``."""
    return paths.root / PLOTS_DIR / market_name / f"{symbol}-{day.isoformat()}-{kind}.png"


def run(args: argparse.Namespace) -> int:
    """Read the day's table, draw it, write the PNG and print where; exit code 2 when it cannot."""
    try:
        paths = DataPaths.from_env(args.data)
    except ValueError as exc:
        return fail(str(exc))
    target = (args.out or plot_path(paths, args.market, args.symbol, args.date, args.kind)).resolve()
    if target.is_dir():
        return fail(f"--out {target} is a directory: name the PNG file, e.g. {target / 'chart.png'}")
    move_legacy_layout(paths.parquet)
    parquet_root = paths.market_parquet(args.market)
    kind = PLOT_KINDS[args.kind]
    source = kind.path(parquet_root, args.date, args.symbol)
    partition = market(args.market).partition_key(args.symbol)
    try:
        table = read_columns(source, kind.columns)
        book = read_day_book_depth(parquet_root, args.date, args.symbol) if args.kind == FEATURES_KIND else None
    except (OSError, pa.ArrowException) as exc:
        return fail(f"cannot read {args.kind} of {args.symbol} on {args.date} ({args.market}): {exc}")
    if table is None:
        return fail(missing_message(args, source, kind, partition))
    title = f"{partition} {args.date} {args.kind}"
    png = render_book_chart(table, title) if args.kind == BOOK_KIND else render_features_chart(table, title, book)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(target, png)
    except OSError as exc:
        return fail(f"cannot write {target}: {exc}")
    counted = int(table.column(kind.counted).to_numpy(zero_copy_only=False).sum())
    extra = "; with the book depth panel" if book is not None else ""
    print(
        f"wrote {target}: {args.kind} {partition} {args.date}, {table.num_rows} rows, "
        f"{counted} {COUNTED_LABELS[kind.counted]}{extra}"
    )
    return 0


def missing_message(args: argparse.Namespace, source: Path, kind: PlotKind, partition: str) -> str:
    """What is missing and how to build it."""
    market_flag = "" if args.market == DEFAULT_MARKET else f" --market {args.market}"
    builders = kind.builders.format(
        date=args.date, symbol=args.symbol, partition=f"{args.date}|{partition}", market_flag=market_flag
    )
    return f"no {args.kind} for {args.symbol} on {args.date} ({args.market}): {source} does not exist; {builders}"


def fail(message: str) -> int:
    """Print ``message`` for a person and give the exit code of a failed plot."""
    print(f"harvest plot: {message}", file=sys.stderr)
    return 2

"""`harvest features --date D --symbol S`: build one day's features from the Parquet on disk and print a summary.

Printing is the default: the file is owned by the Dagster asset ``features_1s``, which the refresh sensor rebuilds
while a day is recorded. ``--write`` replaces it anyway, through the same atomic writer the asset uses.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import time

import numpy as np

from harvest_pipeline.features.quality import empty_minute_rate
from harvest_pipeline.features.table import FeatureDay, FeatureParams, build_features, write_features
from harvest_pipeline.markets import DEFAULT_MARKET, MARKETS, market
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.store.migration import move_legacy_layout
from harvest_pipeline.symbols import validate_symbol

DATE_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def utc_date(text: str) -> dt.date:
    """``--date``: a calendar date written ``YYYY-MM-DD``."""
    try:
        if DATE_PATTERN.fullmatch(text):
            return dt.date.fromisoformat(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"invalid date {text!r}: expected a UTC date YYYY-MM-DD, e.g. 2026-03-02")


def symbol_name(text: str) -> str:
    """``--symbol``: upper-cased, then held to the collector's rule for symbols (it names a directory of the tree)."""
    try:
        return validate_symbol(text.upper())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, e.g. BTCUSDT") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``features`` subcommand."""
    parser = subparsers.add_parser("features", help="build and summarise the per-second features of one day x symbol")
    parser.add_argument("--date", required=True, type=utc_date, help="UTC date, YYYY-MM-DD")
    parser.add_argument("--symbol", required=True, type=symbol_name, help="symbol as recorded, e.g. BTCUSDT")
    parser.add_argument("--market", default=DEFAULT_MARKET, choices=sorted(MARKETS), help="market (default usdm)")
    parser.add_argument("--data", help="data root (default: HARVEST_DATA_ROOT or ./data)")
    parser.add_argument("--fee-tier", default=FeatureParams.fee_tier, help="fee tier label (default TM)")
    parser.add_argument(
        "--write",
        action="store_true",
        help="also replace kind=features_1s/features.parquet (normally the Dagster asset features_1s writes it)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Build, print the summary and write only when asked; exit code 1 when the day has no trades at all."""
    paths = DataPaths.from_env(args.data)
    move_legacy_layout(paths.parquet)
    parquet_root = market(args.market).parquet_root(paths.parquet)
    started = time.perf_counter()
    feature_day = build_features(parquet_root, args.date, args.symbol, FeatureParams(fee_tier=args.fee_tier))
    elapsed = time.perf_counter() - started
    print(summarize(feature_day, elapsed))
    if args.write:
        print(f"written: {write_features(feature_day, parquet_root)}")
    return 0 if feature_day.table.column("trade_count").to_numpy().sum() else 1


def summarize(feature_day: FeatureDay, elapsed_s: float) -> str:
    """A few lines a person can check at a glance: coverage, prices, flow, signals, quality."""
    table = feature_day.table

    def column(name: str) -> np.ndarray:
        return table.column(name).to_numpy(zero_copy_only=False)

    trades = column("trade_count")
    close = column("close").astype(float)
    signals = column("fusion_signal").astype(float)
    empty = empty_minute_rate(table)
    last_close = close[~np.isnan(close)][-1] if (~np.isnan(close)).any() else float("nan")
    latency = feature_day.latency_ms
    return "\n".join(
        [
            f"features_1s {feature_day.symbol} {feature_day.day}: {table.num_rows} rows in {elapsed_s:.2f} s",
            f"  trades {int(trades.sum())} in {int(np.count_nonzero(trades))} non-empty seconds; "
            f"volume {column('volume').sum():.8g}; last close {last_close:.8g}; end CVD {column('cvd')[-1]:.8g}",
            f"  recorded seconds {int(column('recorded').sum())}; L1 from {column('l1_source')[0]}; "
            f"book updates {int(column('book_updates').sum())}; stale seconds {int(column('book_stale').sum())}",
            f"  fusion signal: +1 x{int((signals == 1).sum())}, -1 x{int((signals == -1).sum())}, "
            f"undefined x{int(np.isnan(signals).sum())}",
            f"  empty minutes {empty['empty_minutes']}/{empty['covered_minutes']} covered; "
            f"latency p50 {latency['p50']} ms p99 {latency['p99']} ms; "
            f"feed gaps {len(feature_day.gaps)} ({int(column('gap').sum())} seconds)",
        ]
    )

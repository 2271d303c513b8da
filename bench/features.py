"""features_1s speed on one busy synthetic day x symbol, against a same-run DuckDB scan of the same Parquet.

    python bench/features.py [--trades 1000000] [--ticks 864000] [--parts 1440] [--threads 0] [--rounds 3]

Writes the day as ``--parts`` part files per kind (1,440 = one-minute segments, what readers see during the day) and
its reconstructed book (``book_1s``, one file), then times: features from the parts; consolidation of prices +
bookticker; features from the consolidated day files. Each features time (the best and the median of ``--rounds``) is
printed next to the best time DuckDB needs just to read the same files' columns (a ratio), with the load average.
Goal: features from the parts in <= 5 s.
"""

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402

from harvest_pipeline.features.sources import DaySources  # noqa: E402
from harvest_pipeline.features.table import FeatureParams, build_features  # noqa: E402
from harvest_pipeline.store import read_parquet_sql  # noqa: E402
from harvest_pipeline.store.consolidation import consolidate  # noqa: E402
from tests.features.synthetic import write_synthetic_book, write_synthetic_day  # noqa: E402

DAY = dt.date(2026, 3, 2)
SYMBOL = "BTCUSDT"
GOAL_S = 5.0


def scan_seconds(sources: DaySources, threads: int | None) -> float:
    """DuckDB reading every column features use from the same files (no dedup, no windows): the I/O floor."""
    con = duckdb.connect(config={"threads": threads} if threads else {})
    started = time.perf_counter()
    con.execute(
        f"""SELECT count(*), sum(price), sum(qty), count_if(is_buyer_maker), max(agg_trade_id), sum(latency_ms),
                   max(event_time_ms), max(recv_time_ns), max(segment), max(line)
            FROM {read_parquet_sql(sources.prices)}"""
    ).fetchall()
    con.execute(
        f"""SELECT count(*), sum(bid_price), sum(bid_qty), sum(ask_price), sum(ask_qty), max(update_id),
                   sum(latency_ms), max(event_time_ms), max(recv_time_ns), max(segment), max(line)
            FROM {read_parquet_sql(sources.bookticker)}"""
    ).fetchall()
    con.execute(
        f"""SELECT count(*), max(time_ms), count_if(valid), sum(diffs), sum(list_sum(bid_qtys)),
                   sum(list_sum(ask_qtys)), max(bid_prices[1]), min(ask_prices[1]), sum(list_sum(ofi_levels))
            FROM {read_parquet_sql(sources.book)}"""
    ).fetchall()
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


def timed_features(root: Path, threads: int | None) -> tuple[float, int]:
    started = time.perf_counter()
    feature_day = build_features(root, DAY, SYMBOL, FeatureParams(), threads=threads)
    return time.perf_counter() - started, feature_day.table.num_rows


def report(label: str, root: Path, threads: int | None, rounds: int) -> None:
    sources = DaySources.discover(root, DAY, SYMBOL)
    scan = min(scan_seconds(sources, threads) for _ in range(rounds))
    runs = sorted(timed_features(root, threads) for _ in range(rounds))
    features, rows = runs[0]
    files = len(sources.prices) + len(sources.bookticker) + len(sources.book)
    print(
        f"{label:<22} features {features:5.2f} s (median {runs[len(runs) // 2][0]:5.2f} s, {rows} rows) | "
        f"DuckDB scan of the same {files} files {scan:5.2f} s | ratio {features / scan:4.1f}x | "
        f"goal <= {GOAL_S:g} s: {'met' if features <= GOAL_S else 'MISSED'} | load {load()}"
    )


def load() -> str:
    return " ".join(f"{average:.2f}" for average in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--ticks", type=int, default=864_000)
    parser.add_argument("--parts", type=int, default=1440)
    parser.add_argument("--threads", type=int, default=0, help="DuckDB threads (0 = DuckDB's default, all cores)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each measurement; the best is printed")
    args = parser.parse_args()
    threads = args.threads or None
    with tempfile.TemporaryDirectory(prefix="bench-features-") as temp:
        root = Path(temp)
        started = time.perf_counter()
        write_synthetic_day(root, DAY, SYMBOL, trades=args.trades, ticks=args.ticks, parts=args.parts)
        write_synthetic_book(root, DAY, SYMBOL)
        print(
            f"synthetic day: {args.trades:,} trades, {args.ticks:,} L1 updates in {args.parts} parts per kind, "
            f"book_1s in one file (written in {time.perf_counter() - started:.1f} s); best of {args.rounds} runs"
        )
        report(f"from {args.parts} parts", root, threads, args.rounds)
        started = time.perf_counter()
        for kind in ("prices", "bookticker"):
            consolidate(root, DAY, SYMBOL, kind)
        print(f"consolidation of prices + bookticker: {time.perf_counter() - started:.2f} s")
        report("from day files", root, threads, args.rounds)


if __name__ == "__main__":
    main()

"""``store.table("prices", …)`` against a plain ``read_parquet`` of the same files, in the same run.

    python bench/reading.py [--rows 5000000] [--parts 1440] [--repeat 3]

1. One busy consolidated day x symbol (one ``day-*.parquet`` of ``--rows`` trades, the nightly consolidation's
   output): ``hp.open(root).table("prices", symbol, day)`` to an Arrow table vs ``duckdb.read_parquet(file)`` to an
   Arrow table. Goal: ratio <= 1.5.
2. The same day still in ``--parts`` one-minute parts (today, before consolidation): the table must deduplicate
   across parts; the baseline reads the parts as they are (duplicates and all).
Best of ``--repeat`` each; both sides in the same process, alternating.
"""

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import harvest_pipeline as hp  # noqa: E402
from harvest_pipeline.paths import DataPaths  # noqa: E402
from harvest_pipeline.schema import PRICES  # noqa: E402
from harvest_pipeline.store import kind_dir, sql_literal  # noqa: E402

DAY = dt.date(2026, 3, 2)
SYMBOL = "BTCUSDT"
DAY_MS = 1_772_409_600_000


def trades(rows: int, first_id: int = 1_000_000) -> pa.Table:
    """``rows`` realistic trades over the day, sorted by time (prices near 97,000, sizes up to 2 BTC)."""
    rng = np.random.default_rng(7)
    times = np.sort(rng.integers(DAY_MS, DAY_MS + 86_400_000, rows))
    ids = np.arange(first_id, first_id + rows)
    prices = 9_700_000_000_000 + rng.integers(-50_000_000_000, 50_000_000_000, rows)
    qtys = rng.integers(1_000, 200_000_000, rows)
    columns = {
        "event_time_ms": times + 3,
        "trade_time_ms": times,
        "agg_trade_id": ids,
        "first_trade_id": ids * 3,
        "last_trade_id": ids * 3 + 2,
        "price": scaled_decimals(prices),
        "qty": scaled_decimals(qtys),
        "is_buyer_maker": rng.integers(0, 2, rows).astype(bool),
        "latency_ms": np.full(rows, 3),
        "source": np.full(rows, "ws"),
        "recv_time_ns": (times + 3) * 1_000_000,
        "conn_id": np.full(rows, "c1"),
        "segment": np.full(rows, "bench"),
        "line": np.arange(rows),
    }
    return pa.table(columns, schema=PRICES)


def scaled_decimals(units: np.ndarray) -> pa.Array:
    """``DECIMAL(18, 8)`` values of ``units`` x 1e-8 (positive), built straight in the 128-bit buffer."""
    words = np.zeros((len(units), 2), dtype=np.int64)
    words[:, 0] = units
    return pa.Array.from_buffers(pa.decimal128(18, 8), len(units), [None, pa.py_buffer(words.tobytes())])


def best(seconds: list[float]) -> float:
    return min(seconds)


def compare(root: Path, files: list[Path], repeat: int) -> tuple[float, float, int, int]:
    """Best seconds of the store's table and of the plain read, and their row counts."""
    store = hp.open(root)
    listed = ", ".join(sql_literal(path) for path in files)
    ours, plain = [], []
    rows_ours = rows_plain = 0
    for _ in range(repeat):
        started = time.perf_counter()
        rows_ours = store.table("prices", SYMBOL, DAY, DAY).to_arrow_table().num_rows
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        rows_plain = duckdb.sql(f"SELECT * FROM read_parquet([{listed}])").to_arrow_table().num_rows
        plain.append(time.perf_counter() - started)
    return best(ours), best(plain), rows_ours, rows_plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--parts", type=int, default=1440)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    table = trades(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        consolidated, in_parts = Path(tmp) / "consolidated", Path(tmp) / "parts"
        folder = kind_dir(DataPaths.from_root(consolidated).market_parquet(), DAY, SYMBOL, "prices")
        folder.mkdir(parents=True)
        pq.write_table(table, folder / "day-bench.parquet", compression="zstd", row_group_size=122_880)
        ours, plain, rows_ours, rows_plain = compare(consolidated, [folder / "day-bench.parquet"], args.repeat)
        print(f"consolidated day: store.table {ours:.3f} s ({rows_ours:,} rows), read_parquet {plain:.3f} s "
              f"({rows_plain:,} rows): ratio {ours / plain:.2f} (goal <= 1.5)", flush=True)  # fmt: skip

        folder = kind_dir(DataPaths.from_root(in_parts).market_parquet(), DAY, SYMBOL, "prices")
        folder.mkdir(parents=True)
        bounds = np.linspace(0, table.num_rows, args.parts + 1).astype(int)
        for index, (low, high) in enumerate(zip(bounds, bounds[1:], strict=False)):
            overlap = min(high + 20, table.num_rows)  # a rotation's overlap: the next part repeats a few trades
            pq.write_table(table.slice(low, overlap - low), folder / f"part-{index:05d}.parquet", compression="zstd")
        files = sorted(folder.glob("*.parquet"))
        ours, plain, rows_ours, rows_plain = compare(in_parts, files, args.repeat)
        print(f"{len(files)} parts: store.table {ours:.3f} s ({rows_ours:,} rows, deduplicated), read_parquet "
              f"{plain:.3f} s ({rows_plain:,} rows with the overlaps): ratio {ours / plain:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Synthetic raw Parquet days (vectorised, any size): a random-walk market written as overlapping part files.

Used by the Dagster integration test (small) and by ``bench/features.py`` (a busy day). Rows are split into
``parts`` consecutive part files like per-segment compaction output; the last rows of each part are repeated at the
start of the next one, as two overlapping connections would record them. ``write_synthetic_book`` adds the day's
reconstructed book (``book_1s``), as the book package would write it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harvest_pipeline.features.sources import BOOK_KIND, day_start_ms
from harvest_pipeline.schema import BOOK_1S, BOOK_DEPTH, BOOKTICKER, OFI_LEVELS, PRICES
from harvest_pipeline.store import kind_dir, write_parquet_atomically

SCALE = 10**8  # DECIMAL(18, 8)


def decimals(unscaled: np.ndarray) -> pa.Array:
    """DECIMAL(18, 8) array from non-negative integers in units of 1e-8 (exact, no float round trip)."""
    words = np.zeros((len(unscaled), 2), dtype=np.int64)
    words[:, 0] = unscaled
    return pa.Array.from_buffers(pa.decimal128(18, 8), len(unscaled), [None, pa.py_buffer(words.tobytes())])


def _event_times(
    rng: np.random.Generator, count: int, start_s: int, end_s: int, day_start: int, burst_share: float
) -> np.ndarray:
    """Sorted event times: spread over [start_s, end_s), with ``burst_share`` of them in its middle fifth."""
    span = end_s - start_s
    burst_lo = start_s + 2 * span // 5
    in_burst = int(count * burst_share)
    spread = rng.integers(start_s * 1000, end_s * 1000, count - in_burst)
    burst = rng.integers(burst_lo * 1000, (burst_lo + span // 5) * 1000, in_burst)
    return np.sort(np.concatenate([spread, burst])) + day_start


def _write_parts(table: pa.Table, directory: Path, parts: int, overlap: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, table.num_rows, parts + 1).astype(int)
    for index in range(parts):
        lo = max(bounds[index] - (overlap if index else 0), 0)
        part = table.slice(lo, bounds[index + 1] - lo)
        segment = f"part-seg{index:03d}"
        part = part.set_column(part.schema.get_field_index("segment"), "segment", pa.array([segment] * part.num_rows))
        pq.write_table(part, directory / f"{segment}.parquet", compression="zstd")


def _provenance(event_ms: np.ndarray, latency: np.ndarray) -> dict:
    n = len(event_ms)
    return {
        "latency_ms": latency,
        "recv_time_ns": (event_ms + latency) * 1_000_000,
        "conn_id": pa.array(["c1"] * n),
        "segment": pa.array([""] * n),
        "line": np.arange(n, dtype=np.int64),
    }


def write_synthetic_day(
    root: Path,
    day: dt.date,
    symbol: str,
    trades: int,
    ticks: int,
    start_s: int = 0,
    end_s: int = 86_400,
    parts: int = 4,
    overlap: int = 2,
    burst_share: float = 0.3,
    seed: int = 1,
) -> None:
    """Write prices and bookticker parts for one day x symbol; prices move in 0.1 steps around 50,000."""
    rng = np.random.default_rng(seed)
    start = day_start_ms(day)
    trade_ms = _event_times(rng, trades, start_s, end_s, start, burst_share)
    tick_ms = _event_times(rng, ticks, start_s, end_s, start, burst_share)
    mid_steps = 500_000 + np.cumsum(rng.integers(-1, 2, ticks))  # mid in units of 0.1
    bid = (mid_steps - 1) * (SCALE // 10)
    trade_steps = mid_steps[np.clip(np.searchsorted(tick_ms, trade_ms), 0, ticks - 1)] + rng.integers(-1, 2, trades)
    prices = {
        "event_time_ms": trade_ms,
        "trade_time_ms": trade_ms,
        "agg_trade_id": np.arange(1, trades + 1, dtype=np.int64),
        "first_trade_id": np.arange(1, trades + 1, dtype=np.int64),
        "last_trade_id": np.arange(1, trades + 1, dtype=np.int64),
        "price": decimals(trade_steps * (SCALE // 10)),
        "qty": decimals(rng.integers(1, 5_000, trades) * (SCALE // 1000)),
        "is_buyer_maker": rng.random(trades) < 0.5,
        "source": pa.array(["ws"] * trades, pa.string()),
        **_provenance(trade_ms, rng.integers(0, 40, trades)),
    }
    book = {
        "event_time_ms": tick_ms,
        "transaction_time_ms": tick_ms,
        "update_id": np.arange(1, ticks + 1, dtype=np.int64) * 3,
        "bid_price": decimals(bid),
        "bid_qty": decimals(rng.integers(1, 20_000, ticks) * (SCALE // 1000)),
        "ask_price": decimals(bid + 2 * (SCALE // 10)),
        "ask_qty": decimals(rng.integers(1, 20_000, ticks) * (SCALE // 1000)),
        **_provenance(tick_ms, rng.integers(0, 40, ticks)),
    }
    _write_parts(pa.table(prices, schema=PRICES), kind_dir(root, day, symbol, "prices"), parts, overlap)
    _write_parts(pa.table(book, schema=BOOKTICKER), kind_dir(root, day, symbol, "bookticker"), parts, overlap)


def write_synthetic_book(
    root: Path, day: dt.date, symbol: str, invalid_seconds: tuple[int, int] = (0, 60), seed: int = 1
) -> Path:
    """Write the day's ``book_1s`` file (86,400 rows) as the book package would: ``BOOK_DEPTH`` levels per side
    around a random-walk best bid in 0.1 steps near 50,000, random diffs and level OFIs, valid except in the seconds
    [``invalid_seconds``)."""
    rng = np.random.default_rng(seed)
    seconds = np.arange(86_400)
    invalid = (seconds >= invalid_seconds[0]) & (seconds < invalid_seconds[1])
    best_bid = (500_000 + np.cumsum(rng.integers(-1, 2, 86_400)))[:, None] * (SCALE // 10)
    levels = np.arange(BOOK_DEPTH) * (SCALE // 10)

    def per_row(values: pa.Array, name: str) -> pa.Array:
        """Consecutive runs of ``values`` as one list per second, null where the book is not valid."""
        offsets = pa.array(np.arange(0, len(values) + 1, len(values) // 86_400, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, values, type=BOOK_1S.field(name).type, mask=pa.array(invalid))

    def quantities() -> np.ndarray:
        return rng.integers(1, 20_000, (86_400, BOOK_DEPTH)) * (SCALE // 1000)

    book = {
        "time_ms": day_start_ms(day) + seconds * 1000,
        "second_of_day": seconds.astype(np.int32),
        "valid": ~invalid,
        "last_update_id": pa.array(seconds + 1_000, mask=invalid),
        "bid_prices": per_row(decimals((best_bid - levels).ravel()), "bid_prices"),
        "bid_qtys": per_row(decimals(quantities().ravel()), "bid_qtys"),
        "ask_prices": per_row(decimals((best_bid + 2 * (SCALE // 10) + levels).ravel()), "ask_prices"),
        "ask_qtys": per_row(decimals(quantities().ravel()), "ask_qtys"),
        "diffs": rng.integers(0, 20, 86_400),
        "ofi_levels": per_row(pa.array(np.round(rng.normal(0, 3, 86_400 * OFI_LEVELS), 3)), "ofi_levels"),
    }
    target = kind_dir(root, day, symbol, BOOK_KIND) / "book_1s.parquet"
    write_parquet_atomically(pa.table(book, schema=BOOK_1S), target)
    return target

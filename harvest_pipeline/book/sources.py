"""Which Parquet files a day's book reads and where its three kinds live; reading them into ``inputs`` columns.

A book of one UTC day x symbol reads the visible files (parts and day file, ``store.visible_files``) of
- the day's ``orderbook`` (diffs, deduplicated by ``final_update_id`` keeping the earliest received) and
  ``bookticker``;
- ``depth_snapshot`` of the day and the day before (a snapshot fetched just before midnight may start the day's book);
- the day before's last ``book_checkpoint`` (the book carried over midnight);
- the next day's first diff (does the chain continue past midnight?).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from harvest_pipeline.book.decimals import scaled_ints
from harvest_pipeline.book.inputs import (
    CarriedBook,
    DayInputs,
    DiffColumns,
    Levels,
    NextDayStart,
    Snapshot,
    TickerColumns,
)
from harvest_pipeline.features.sources import day_start_ms
from harvest_pipeline.schema import BOOK_KINDS
from harvest_pipeline.store import kind_dir, visible_files

_DIFF_COLUMNS = ["event_time_ms", "first_update_id", "final_update_id", "prev_final_update_id", "recv_time_ns"]


def book_file(parquet_root: Path, day: dt.date, symbol: str, kind: str) -> Path:
    """Where one of the book kinds of a day x symbol lives."""
    if kind not in BOOK_KINDS:
        raise ValueError(f"{kind!r} is not a book kind ({', '.join(BOOK_KINDS)})")
    return kind_dir(parquet_root, day, symbol, kind) / f"{kind}.parquet"


def _read(files: list[Path], columns: list[str]) -> pa.Table:
    return ds.dataset([str(path) for path in files], format="parquet").to_table(columns=columns)


def _first_per_id(table: pa.Table, id_column: str, order: list[str]) -> np.ndarray:
    """Row numbers keeping one row per ``id_column`` value (the first by ``order``), sorted by it."""
    keys = [(id_column, "ascending"), *((name, "ascending") for name in order)]
    indices = pc.sort_indices(table.select([id_column, *order]), sort_keys=keys).to_numpy()
    ids = table.column(id_column).to_numpy()[indices]
    keep = np.ones(len(ids), dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    return indices[keep]


def _flat_levels(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(offsets, prices, qtys)`` of a list<level> column, scaled integers."""
    parts = [_flat_chunk(chunk) for chunk in column.chunks]
    if not parts:
        return np.zeros(1, dtype=np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    return _concatenate_levels(parts)


def _flat_chunk(levels: pa.ListArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    offsets = levels.offsets.to_numpy().astype(np.int64)
    prices, qtys = levels.flatten().flatten()
    return offsets - offsets[0], scaled_ints(prices), scaled_ints(qtys)


def _concatenate_levels(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    lengths = np.concatenate([np.diff(offsets) for offsets, _, _ in parts])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets, np.concatenate([p for _, p, _ in parts]), np.concatenate([q for _, _, q in parts])


def _select_levels(
    levels: tuple[np.ndarray, np.ndarray, np.ndarray], rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The levels of ``rows`` only, in that order (a gather over the flat arrays, no per-row work)."""
    offsets, prices, qtys = levels
    lengths = (offsets[1:] - offsets[:-1])[rows]
    selected = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=selected[1:])
    gather = np.repeat(offsets[:-1][rows] - selected[:-1], lengths) + np.arange(selected[-1], dtype=np.int64)
    return selected, prices[gather], qtys[gather]


def read_diffs(files: list[Path]) -> DiffColumns:
    """The day's diffs, one per ``final_update_id`` (the earliest received), in id order. Each file's levels become
    scaled-integer arrays as soon as it is read, so the day's Arrow tables are never all in memory at once."""
    if not files:
        return DiffColumns.empty()
    scalars, bids, asks = [], [], []
    for path in files:
        table = ds.dataset(str(path), format="parquet").to_table(
            columns=[*_DIFF_COLUMNS, "segment", "line", "bids", "asks"]
        )
        scalars.append(table.drop_columns(["bids", "asks"]))
        bids.append(_flat_levels(table.column("bids")))
        asks.append(_flat_levels(table.column("asks")))
        del table
    rows = pa.concat_tables(scalars)
    keep = _first_per_id(rows, "final_update_id", ["recv_time_ns", "segment", "line"])
    bid_levels, ask_levels = _concatenate_levels(bids), _concatenate_levels(asks)
    if len(keep) != rows.num_rows or np.any(keep[1:] <= keep[:-1]):
        bid_levels, ask_levels = _select_levels(bid_levels, keep), _select_levels(ask_levels, keep)
    event, first, final, prev, recv = (rows.column(name).to_numpy()[keep] for name in _DIFF_COLUMNS)
    return DiffColumns(event, first, final, prev, recv, *bid_levels, *ask_levels)


def _levels(levels: pa.Array | pa.Scalar) -> Levels:
    values = levels.values if isinstance(levels, pa.ListScalar) else levels
    prices, qtys = values.flatten()
    return scaled_ints(prices).tolist(), scaled_ints(qtys).tolist()


def read_snapshots(files: list[Path]) -> list[Snapshot]:
    """Every stored REST snapshot, one per ``lastUpdateId``."""
    if not files:
        return []
    table = _read(files, ["last_update_id", "recv_time_ns", "segment", "line", "bids", "asks"])
    table = table.take(_first_per_id(table, "last_update_id", ["recv_time_ns", "segment", "line"]))
    ids = table.column("last_update_id").to_pylist()
    bids, asks = table.column("bids"), table.column("asks")
    return [Snapshot(ids[row], _levels(bids[row]), _levels(asks[row])) for row in range(table.num_rows)]


def read_carried(checkpoint_file: Path) -> CarriedBook | None:
    """The day before's book at midnight: its last checkpoint, when that is valid."""
    if not checkpoint_file.exists():
        return None
    table = ds.dataset(str(checkpoint_file), format="parquet").to_table()
    if table.num_rows == 0:
        return None
    last = int(pc.index(table.column("time_ms"), pc.max(table.column("time_ms"))).as_py())
    if not table.column("valid")[last].as_py():
        return None
    return CarriedBook(
        table.column("last_update_id")[last].as_py(),
        table.column("last_event_time_ms")[last].as_py(),
        _levels(table.column("bids")[last]),
        _levels(table.column("asks")[last]),
    )


def read_next_day_start(files: list[Path]) -> NextDayStart | None:
    """The next day's lowest ``final_update_id`` diff, or None when the next day has none (yet)."""
    if not files:
        return None
    table = _read(files, ["final_update_id", "prev_final_update_id", "event_time_ms", "recv_time_ns"])
    if table.num_rows == 0:
        return None
    first = int(pc.index(table.column("final_update_id"), pc.min(table.column("final_update_id"))).as_py())
    row = {name: table.column(name)[first].as_py() for name in table.column_names}
    return NextDayStart(row["prev_final_update_id"], row["event_time_ms"], row["recv_time_ns"])


def read_tickers(files: list[Path]) -> TickerColumns:
    """The day's bookTicker updates, one per ``update_id``, in id order."""
    if not files:
        return TickerColumns.empty()
    columns = ["update_id", "bid_price", "bid_qty", "ask_price", "ask_qty"]
    table = _read(files, [*columns, "recv_time_ns", "segment", "line"])
    table = table.take(_first_per_id(table, "update_id", ["recv_time_ns", "segment", "line"]))
    return TickerColumns(
        table.column("update_id").to_numpy(), *(scaled_ints(table.column(name)) for name in columns[1:])
    )


def read_day_inputs(parquet_root: Path, day: dt.date, symbol: str) -> DayInputs:
    """Everything the book of ``symbol`` on UTC ``day`` reads, from whatever Parquet is visible now."""
    before, after = day - dt.timedelta(days=1), day + dt.timedelta(days=1)

    def files(on: dt.date, kind: str) -> list[Path]:
        return visible_files(kind_dir(parquet_root, on, symbol, kind))

    return DayInputs(
        day_start_ms=day_start_ms(day),
        diffs=read_diffs(files(day, "orderbook")),
        snapshots=read_snapshots(files(before, "depth_snapshot") + files(day, "depth_snapshot")),
        carried=read_carried(book_file(parquet_root, before, symbol, "book_checkpoint")),
        next_day=read_next_day_start(files(after, "orderbook")),
        tickers=read_tickers(files(day, "bookticker")),
    )

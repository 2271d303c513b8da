"""Hand-made book inputs: diffs and snapshots written as readable tuples, turned into ``inputs`` columns."""

from __future__ import annotations

import datetime as dt

import numpy as np

from harvest_pipeline.book.inputs import DiffColumns, Snapshot
from harvest_pipeline.features.sources import day_start_ms

DAY = dt.date(2026, 3, 2)
DAY_START = day_start_ms(DAY)
UNIT = 10**8

Side = list[tuple[float, float]]


def scaled(value: float) -> int:
    """A price or quantity given with at most 8 decimals, as an exact scaled integer."""
    return round(value * UNIT)


def side_columns(levels: Side) -> tuple[list[int], list[int]]:
    return [scaled(price) for price, _ in levels], [scaled(qty) for _, qty in levels]


def snapshot(last_update_id: int, bids: Side, asks: Side) -> Snapshot:
    return Snapshot(last_update_id, side_columns(bids), side_columns(asks))


def diff_columns(diffs: list[tuple[int, int, int, int, Side, Side]]) -> DiffColumns:
    """Diffs as ``(offset_ms, U, u, pu, bids, asks)``, ``offset_ms`` from the day's start; in the given order."""

    def flat(index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        offsets, prices, qtys = [0], [], []
        for diff in diffs:
            column = side_columns(diff[index])
            prices += column[0]
            qtys += column[1]
            offsets.append(len(prices))
        return (np.array(offsets, dtype=np.int64), np.array(prices, dtype=np.int64), np.array(qtys, dtype=np.int64))

    def ints(index: int) -> np.ndarray:
        return np.array([diff[index] for diff in diffs], dtype=np.int64)

    event_ms = ints(0) + DAY_START
    return DiffColumns(event_ms, ints(1), ints(2), ints(3), event_ms * 1_000_000, *flat(4), *flat(5))

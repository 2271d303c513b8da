"""What a day's book reconstruction reads, as plain columns: the diffs, the snapshots, the carried book, the tickers.

Pure containers (numpy int64 columns, scaled-integer prices and quantities); ``sources`` fills them from Parquet and
tests or benchmarks may build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

Levels = tuple[list[int], list[int]]
"""One side as ``(prices, qtys)``, scaled integers."""


class DiffBlock(NamedTuple):
    """Some consecutive diffs of ``DiffColumns`` as lists."""

    event_ms: list[int]
    first_ids: list[int]
    final_ids: list[int]
    prev_ids: list[int]
    recv_ns: list[int]
    bid_offsets: list[int]
    bid_prices: list[int]
    bid_qtys: list[int]
    ask_offsets: list[int]
    ask_prices: list[int]
    ask_qtys: list[int]


@dataclass(frozen=True)
class DiffColumns:
    """The day's depth diffs, one per ``final_update_id`` and sorted by it; their levels flattened per side:
    diff ``i``'s bids are ``bid_prices[bid_offsets[i]:bid_offsets[i + 1]]`` (with the same quantities)."""

    event_ms: np.ndarray
    first_ids: np.ndarray
    final_ids: np.ndarray
    prev_ids: np.ndarray
    recv_ns: np.ndarray
    bid_offsets: np.ndarray
    bid_prices: np.ndarray
    bid_qtys: np.ndarray
    ask_offsets: np.ndarray
    ask_prices: np.ndarray
    ask_qtys: np.ndarray

    def __len__(self) -> int:
        return len(self.final_ids)

    def block(self, start: int, stop: int) -> DiffBlock:
        """Diffs ``start:stop`` as Python lists (what a loop over them reads fastest), level offsets from 0."""
        bid_offsets, ask_offsets = self.bid_offsets[start : stop + 1], self.ask_offsets[start : stop + 1]
        return DiffBlock(
            self.event_ms[start:stop].tolist(),
            self.first_ids[start:stop].tolist(),
            self.final_ids[start:stop].tolist(),
            self.prev_ids[start:stop].tolist(),
            self.recv_ns[start:stop].tolist(),
            (bid_offsets - bid_offsets[0]).tolist(),
            self.bid_prices[bid_offsets[0] : bid_offsets[-1]].tolist(),
            self.bid_qtys[bid_offsets[0] : bid_offsets[-1]].tolist(),
            (ask_offsets - ask_offsets[0]).tolist(),
            self.ask_prices[ask_offsets[0] : ask_offsets[-1]].tolist(),
            self.ask_qtys[ask_offsets[0] : ask_offsets[-1]].tolist(),
        )

    @classmethod
    def empty(cls) -> DiffColumns:
        """No diff at all."""
        none = np.empty(0, dtype=np.int64)
        start = np.zeros(1, dtype=np.int64)
        return cls(none, none, none, none, none, start, none, none, start, none, none)


@dataclass(frozen=True)
class Snapshot:
    """A REST depth snapshot: the book at ``last_update_id`` (its deepest levels only as deep as it was asked)."""

    last_update_id: int
    bids: Levels
    asks: Levels


@dataclass(frozen=True)
class CarriedBook:
    """The day before's book at midnight (its last valid checkpoint), at update id ``last_update_id``, reached by a
    diff at ``last_event_ms``."""

    last_update_id: int
    last_event_ms: int | None
    bids: Levels
    asks: Levels


@dataclass(frozen=True)
class NextDayStart:
    """The next day's first diff: whether it continues the chain decides how the day's last interval ends."""

    prev_id: int
    event_ms: int
    recv_ns: int


@dataclass(frozen=True)
class TickerColumns:
    """bookTicker updates, one per ``update_id`` and sorted by it, scaled integers."""

    update_ids: np.ndarray
    bid_prices: np.ndarray
    bid_qtys: np.ndarray
    ask_prices: np.ndarray
    ask_qtys: np.ndarray

    @classmethod
    def empty(cls) -> TickerColumns:
        """No bookTicker recorded."""
        none = np.empty(0, dtype=np.int64)
        return cls(none, none, none, none, none)


@dataclass(frozen=True)
class DayInputs:
    """Everything the reconstruction of one UTC day x symbol reads."""

    day_start_ms: int
    diffs: DiffColumns
    snapshots: list[Snapshot]
    carried: CarriedBook | None
    next_day: NextDayStart | None
    tickers: TickerColumns

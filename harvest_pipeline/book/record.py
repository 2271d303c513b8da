"""What the replay keeps at each second end (``book_1s``) and minute end (``book_checkpoint``), as flat columns.

The replay calls ``pass_until`` before applying a diff, so a boundary ``end`` is recorded with the book after every
diff whose event time is before ``end``. Levels go into flat lists with offsets per row (best first); a row recorded
while the book is invalid adds no level and is null in the tables (``tables``).
"""

from __future__ import annotations

import numpy as np

from harvest_pipeline.book.state import Book, BookSide
from harvest_pipeline.schema import BOOK_DEPTH, OFI_LEVELS

SECONDS_PER_DAY = 86_400
SECONDS_PER_CHECKPOINT = 60


class SideLevels:
    """Levels of one side for many rows, each row's as two small int64 arrays (a day of Python ints would not be
    small): row ``r`` holds ``lengths[r]`` levels, best first."""

    def __init__(self) -> None:
        self.lengths: list[int] = []
        self._prices: list[np.ndarray] = []
        self._qtys: list[np.ndarray] = []

    def add(self, prices: list[int], sizes: dict[int, int]) -> None:
        """One row holding ``prices`` (best first) and their sizes."""
        self._prices.append(np.array(prices, dtype=np.int64))
        self._qtys.append(np.array([sizes[price] for price in prices], dtype=np.int64))
        self.lengths.append(len(prices))

    def add_none(self) -> None:
        """One row without levels."""
        self.lengths.append(0)

    def offsets(self) -> np.ndarray:
        """Row ``r``'s levels are ``prices()[offsets[r]:offsets[r + 1]]``."""
        offsets = np.zeros(len(self.lengths) + 1, dtype=np.int32)
        np.cumsum(self.lengths, out=offsets[1:])
        return offsets

    def prices(self) -> np.ndarray:
        """Every row's prices, one after the other."""
        return np.concatenate(self._prices) if self._prices else np.empty(0, dtype=np.int64)

    def qtys(self) -> np.ndarray:
        """Every row's quantities, one after the other."""
        return np.concatenate(self._qtys) if self._qtys else np.empty(0, dtype=np.int64)


class Recorder:
    """The rows of one UTC day starting at ``day_start_ms``: 86,400 second ends and 1,440 minute ends."""

    def __init__(self, day_start_ms: int):
        self.day_start_ms = day_start_ms
        self.second = 0
        self.next_end = day_start_ms + 1000
        self.valid: list[bool] = []
        self.update_ids: list[int | None] = []
        self.diffs: list[int] = []
        self.bids = SideLevels()
        self.asks = SideLevels()
        self.flows: list[int] = []
        """``OFI_LEVELS`` per valid row, scaled quantity units."""
        self.checkpoint_times: list[int] = []
        self.checkpoint_valid: list[bool] = []
        self.checkpoint_update_ids: list[int | None] = []
        self.checkpoint_event_ms: list[int | None] = []
        self.checkpoint_bids = SideLevels()
        self.checkpoint_asks = SideLevels()
        self._diffs_now = 0
        self._flow_now = [0] * OFI_LEVELS

    def count_diff(self, flows: list[int] | None) -> None:
        """One diff applied in the current second, with its level-wise order-flow imbalance (None: first of a book)."""
        self._diffs_now += 1
        if flows is not None:
            now = self._flow_now
            for level in range(OFI_LEVELS):
                now[level] += flows[level]

    def pass_until(self, clock_ms: int, book: Book, valid: bool, valid_until: int | None = None) -> None:
        """Record every boundary at or before ``clock_ms`` with ``book`` as it is; a row is valid when ``valid`` and
        its last millisecond is before ``valid_until`` (when given)."""
        while self.next_end <= clock_ms and self.second < SECONDS_PER_DAY:
            row_valid = valid and (valid_until is None or self.next_end - 1 < valid_until)
            self._record_second(book, row_valid)
            if (self.second + 1) % SECONDS_PER_CHECKPOINT == 0:
                self._record_checkpoint(book, row_valid)
            self.second += 1
            self.next_end += 1000

    def _record_second(self, book: Book, valid: bool) -> None:
        self.valid.append(valid)
        self.update_ids.append(book.update_id if valid else None)
        self.diffs.append(self._diffs_now)
        if valid:
            _add_top(self.bids, book.bids)
            _add_top(self.asks, book.asks)
            self.flows.extend(self._flow_now)
        else:
            self.bids.add_none()
            self.asks.add_none()
        self._diffs_now = 0
        self._flow_now = [0] * OFI_LEVELS

    def _record_checkpoint(self, book: Book, valid: bool) -> None:
        self.checkpoint_times.append(self.next_end)
        self.checkpoint_valid.append(valid)
        self.checkpoint_update_ids.append(book.update_id if valid else None)
        self.checkpoint_event_ms.append(book.event_ms if valid else None)
        if valid:
            self.checkpoint_bids.add(book.bids.all_prices(), book.bids.sizes)
            self.checkpoint_asks.add(book.asks.all_prices(), book.asks.sizes)
        else:
            self.checkpoint_bids.add_none()
            self.checkpoint_asks.add_none()


def _add_top(levels: SideLevels, side: BookSide) -> None:
    levels.add(side.top_prices(BOOK_DEPTH), side.sizes)

"""The true order book of one symbol as it was after each recent depth diff, for tests that check a reconstruction.

Pure, no clock, no I/O. Every diff the market takes is recorded (published or not) by keeping the diff itself; every
``checkpoint_every`` diffs a full copy of the book is kept too, so the book after any recorded diff boundary (a diff's
``last_update_id``) is one checkpoint plus at most ``checkpoint_every`` diffs away. Checkpoints, with the diffs after
them, are forgotten once a newer checkpoint is older than the horizon, so every boundary of the last ``horizon`` stays
answerable and memory stays bounded by the horizon plus one checkpoint interval. The initial book (the market's
starting update id) is the first checkpoint. Prices are integer ticks and sizes integer lots, as in ``market``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from harvest_pipeline.simulator.market import DepthDiff

CHECKPOINT_EVERY = 50
"""Diffs between two full-book checkpoints: the most diffs one answer applies."""


class BookAt(NamedTuple):
    """The full book right after boundary ``update_id``, both sides best first, as ``(tick, lots)``."""

    update_id: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


@dataclass
class _Checkpoint:
    """The book right after ``update_id`` and the diffs recorded after it, up to the next checkpoint."""

    update_id: int
    time_ms: int
    bids: dict[int, int]
    asks: dict[int, int]
    diffs: list[DepthDiff] = field(default_factory=list)


class BookHistory:
    """The book after every diff boundary of the last ``horizon_s`` seconds, starting from the book at ``update_id``."""

    def __init__(
        self,
        update_id: int,
        bids: Mapping[int, int],
        asks: Mapping[int, int],
        now_ms: int,
        horizon_s: float,
        checkpoint_every: int = CHECKPOINT_EVERY,
    ):
        self.horizon_ms = round(horizon_s * 1000)
        self.checkpoint_every = checkpoint_every
        self._checkpoints = [_Checkpoint(update_id, now_ms, dict(bids), dict(asks))]
        self._checkpoint_ids = [update_id]
        self.latest_update_id = update_id

    @property
    def oldest_update_id(self) -> int:
        """The oldest boundary still answerable."""
        return self._checkpoint_ids[0]

    @property
    def checkpoint_update_ids(self) -> list[int]:
        """The boundaries whose whole book is kept, oldest first."""
        return list(self._checkpoint_ids)

    def record(self, diff: DepthDiff, now_ms: int, bids: Mapping[int, int], asks: Mapping[int, int]) -> None:
        """Keep ``diff`` (taken at ``now_ms``); ``bids``/``asks`` are the whole book right after it, copied only when
        a checkpoint is due."""
        newest = self._checkpoints[-1]
        if len(newest.diffs) < self.checkpoint_every:
            newest.diffs.append(diff)
        else:
            self._checkpoints.append(_Checkpoint(diff.last_update_id, now_ms, dict(bids), dict(asks)))
            self._checkpoint_ids.append(diff.last_update_id)
            self._forget(now_ms)
        self.latest_update_id = diff.last_update_id

    def _forget(self, now_ms: int) -> None:
        """Drop the oldest checkpoints while the next one already covers the whole horizon."""
        cutoff = now_ms - self.horizon_ms
        drop = 0
        while drop + 1 < len(self._checkpoints) and self._checkpoints[drop + 1].time_ms <= cutoff:
            drop += 1
        del self._checkpoints[:drop]
        del self._checkpoint_ids[:drop]

    def book_at(self, update_id: int, limit: int | None = None) -> BookAt:
        """The book right after the latest recorded boundary ``<= update_id`` (the latest one for newer ids), at most
        ``limit`` levels a side; ``LookupError`` when ``update_id`` is older than every kept boundary."""
        index = bisect_right(self._checkpoint_ids, update_id) - 1
        if index < 0:
            raise LookupError(
                f"update id {update_id} is older than the kept book history: boundaries "
                f"{self.oldest_update_id}..{self.latest_update_id} are kept (horizon {self.horizon_ms / 1000:g} s)"
            )
        checkpoint = self._checkpoints[index]
        bids, asks = dict(checkpoint.bids), dict(checkpoint.asks)
        boundary = checkpoint.update_id
        for diff in checkpoint.diffs:
            if diff.last_update_id > update_id:
                break
            _apply(bids, diff.bids)
            _apply(asks, diff.asks)
            boundary = diff.last_update_id
        return BookAt(boundary, _best_first(bids, True, limit), _best_first(asks, False, limit))


def _apply(side: dict[int, int], levels: list[tuple[int, int]]) -> None:
    for tick, lots in levels:
        if lots:
            side[tick] = lots
        else:
            side.pop(tick, None)


def _best_first(side: dict[int, int], is_bid: bool, limit: int | None) -> list[tuple[int, int]]:
    return [(tick, side[tick]) for tick in sorted(side, reverse=is_bid)[:limit]]

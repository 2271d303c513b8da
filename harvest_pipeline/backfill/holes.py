"""Holes in an aggregate-trade id sequence, the bounded queue of those still to fill, and what one REST page of
``GET /fapi/v1/aggTrades?fromId=`` says about a hole. Pure: no I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field

AGG_TRADES_PAGE = 1000
"""The most trades one ``/fapi/v1/aggTrades`` answer holds (Binance's maximum ``limit``)."""
AGG_TRADES_WEIGHT = 20
"""Request weight of ``GET /fapi/v1/aggTrades`` (Binance USD-M)."""
PAGE_MEMORY_BYTES = 2 * 1024 * 1024
"""Peak memory of one page in flight beyond the records it queues (measured 1.9 MB for 1,000 trades: the body, the
parsed objects, one serialised trade at a time). The backfill holds one page at a time, so this is its whole cost on
top of the line queue's bound."""


@dataclass
class Hole:
    """Trade ids ``first_id..last_id`` (inclusive) of ``symbol`` that are missing, and why they went missing."""

    symbol: str
    first_id: int
    last_id: int
    cause: str
    attempts: int = 0
    not_before: float = 0.0
    """Monotonic time before which the hole is not tried again (after a failed request)."""

    @property
    def ids(self) -> int:
        """How many ids the hole still spans."""
        return self.last_id - self.first_id + 1


@dataclass
class HoleQueue:
    """Holes waiting to be filled, oldest first, at most ``max_holes`` of them.

    A hole overlapping or touching one already queued for the same symbol is merged into it. Past ``max_holes`` a new
    hole is merged into the nearest queued hole of its symbol (the range grows, so a few ids already stored are
    fetched again and deduplicated downstream): memory stays bounded however many holes the feed produces.
    """

    max_holes: int
    holes: list[Hole] = field(default_factory=list)

    def add(self, hole: Hole) -> None:
        """Queue ``hole`` (merged with an overlapping one; into the nearest one when the queue is full)."""
        if hole.last_id < hole.first_id:
            return
        same = [queued for queued in self.holes if queued.symbol == hole.symbol]
        for queued in same:
            if hole.first_id <= queued.last_id + 1 and queued.first_id <= hole.last_id + 1:
                self._widen(queued, hole)
                return
        if len(self.holes) >= self.max_holes and same:
            nearest = min(same, key=lambda q: min(abs(q.first_id - hole.last_id), abs(hole.first_id - q.last_id)))
            self._widen(nearest, hole)
            return
        self.holes.append(hole)  # beyond the bound only for a symbol with no hole queued: at most one per symbol

    @staticmethod
    def _widen(queued: Hole, hole: Hole) -> None:
        queued.first_id = min(queued.first_id, hole.first_id)
        queued.last_id = max(queued.last_id, hole.last_id)
        if hole.cause not in queued.cause.split("; "):
            queued.cause = f"{queued.cause}; {hole.cause}"[:500]

    def next_ready(self, now: float) -> Hole | None:
        """The oldest hole that may be tried at ``now``."""
        return next((hole for hole in self.holes if hole.not_before <= now), None)

    def seconds_to_next(self, now: float) -> float | None:
        """Seconds until some hole may be tried (None when the queue is empty)."""
        if not self.holes:
            return None
        return max(0.0, min(hole.not_before for hole in self.holes) - now)

    def remove(self, hole: Hole) -> None:
        """Forget ``hole`` (filled, or declared unfillable)."""
        self.holes.remove(hole)

    def __len__(self) -> int:
        return len(self.holes)


@dataclass(frozen=True)
class PageOutcome:
    """What one answer for ``fromId = hole.first_id`` means for the hole."""

    in_hole: list[int]
    """Indexes (into the answer) of the trades whose id lies in the hole: the ones to store."""
    not_served: list[tuple[int, int]]
    """Inclusive id ranges of the hole the answer proves the exchange does not serve (it skipped past them)."""
    next_first_id: int | None
    """Where the hole continues (fetch again from there), or None when the answer settled all of it."""


def read_page(hole: Hole, ids: list[int]) -> PageOutcome:
    """Judge an answer (its trade ids, in answer order) for ``fromId = hole.first_id``.

    The exchange answers ids ``>= fromId`` in ascending order, so every id of the hole below the largest id answered
    that is not in the answer does not exist there (never issued, or older than the history it serves). An empty
    answer settles nothing (the REST view may lag the stream): the caller retries and in the end declares the hole.
    """
    if not ids:
        return PageOutcome([], [], hole.first_id)
    in_hole = [index for index, trade_id in enumerate(ids) if hole.first_id <= trade_id <= hole.last_id]
    reached = max(ids)
    not_served: list[tuple[int, int]] = []
    expected = hole.first_id
    for trade_id in sorted({ids[index] for index in in_hole}):
        if trade_id > expected:
            not_served.append((expected, trade_id - 1))
        expected = trade_id + 1
    end = min(reached, hole.last_id)
    if expected <= end:
        not_served.append((expected, end))
    if reached >= hole.last_id:
        return PageOutcome(in_hole, not_served, None)
    # a full page ending inside the hole: the rest of the hole is on the next page
    return PageOutcome(in_hole, not_served, reached + 1)


NOT_SERVED = "the exchange serves no trade with ids"
"""How the reason of ids an answer proved absent starts (``not_served_reason``)."""


def not_served_reason(first_id: int, last_id: int) -> str:
    """The declared reason for ids an answer proved the exchange does not serve."""
    return f"{NOT_SERVED} {first_id}..{last_id} (never issued, or older than the history it keeps)"

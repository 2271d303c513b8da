"""Replaying one UTC day of depth diffs into a validated book, following Binance's USD-M rules (docs/book.md).

The walk goes through the diffs in ``final_update_id`` order. While the book is valid, a diff applies when its ``pu``
equals the book's update id; any other ``pu`` is a break: the valid interval ends at that diff's event time. While
invalid, a diff starts a new interval when a snapshot ``L`` fits it (``U <= L <= u``, or ``pu == L``): the book
becomes the snapshot and the diff applies. The day starts valid when the day before's last checkpoint is valid and
the day's first diff continues it. Second ends and minute ends passed on the way are recorded (``Recorder``); each
applied diff adds its level-wise order-flow imbalance and is checked for a crossed book and against bookTicker.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field

from harvest_pipeline.book.inputs import DayInputs, Snapshot
from harvest_pipeline.book.record import Recorder
from harvest_pipeline.book.state import Book, BookSide
from harvest_pipeline.schema import OFI_LEVELS

MS_PER_DAY = 86_400_000
BLOCK_DIFFS = 20_000
"""Diffs turned into Python lists at a time: a day's levels as Python ints would take gigabytes."""
MAX_EXAMPLES = 20
"""Crossed books and bookTicker disagreements listed (the counts are exact)."""


@dataclass
class Interval:
    """One valid interval ``[from_ms, to_ms)``; the columns of ``schema.BOOK_VALIDITY`` (``end_reason`` is filled
    from the ledger afterwards)."""

    from_ms: int
    first_update_id: int
    start: str
    snapshot_update_id: int | None
    to_ms: int = 0
    last_update_id: int = 0
    diffs: int = 0
    end: str = ""
    end_reason: str | None = None
    break_after_id: int | None = None
    break_pu: int | None = None
    break_after_recv_ns: int | None = None
    break_before_recv_ns: int | None = None
    break_after_ms: int | None = None


@dataclass
class ReplayStats:
    """What the walk saw: diffs read and applied, crossed books inside valid intervals, bookTicker agreement."""

    diffs: int = 0
    applied: int = 0
    crossed: int = 0
    crossed_examples: list[dict[str, int]] = field(default_factory=list)
    ticker_compared: int = 0
    ticker_agreed: int = 0
    ticker_disagreements: list[dict[str, int]] = field(default_factory=list)


@dataclass
class Replay:
    """The result of one day: its intervals, what was recorded at second and minute ends, the statistics."""

    intervals: list[Interval]
    recorder: Recorder
    stats: ReplayStats


def _top(side: BookSide) -> tuple[list[int], list[int]]:
    prices = side.top_prices(OFI_LEVELS)
    sizes = side.sizes
    return prices, [sizes[price] for price in prices]


def level_ofi(
    before: tuple[tuple[list[int], list[int]], tuple[list[int], list[int]]],
    after: tuple[tuple[list[int], list[int]], tuple[list[int], list[int]]],
) -> list[int]:
    """The order-flow imbalance of levels 1..``OFI_LEVELS`` from one book state to the next (Cont–Kukanov–Stoikov per
    level; a level missing on either side of the change contributes 0), in scaled quantity units."""
    (bid_p0, bid_q0), (ask_p0, ask_q0) = before
    (bid_p1, bid_q1), (ask_p1, ask_q1) = after
    flows = []
    for level in range(OFI_LEVELS):
        flow = 0
        if level < len(bid_p0) and level < len(bid_p1):
            b0, b1 = bid_p0[level], bid_p1[level]
            if b1 >= b0:
                flow += bid_q1[level]
            if b1 <= b0:
                flow -= bid_q0[level]
        if level < len(ask_p0) and level < len(ask_p1):
            a0, a1 = ask_p0[level], ask_p1[level]
            if a1 <= a0:
                flow -= ask_q1[level]
            if a1 >= a0:
                flow += ask_q0[level]
        flows.append(flow)
    return flows


class _SnapshotIndex:
    """Snapshots by ``lastUpdateId``, to find one that lets a diff start a book."""

    def __init__(self, snapshots: list[Snapshot]):
        by_id = {snapshot.last_update_id: snapshot for snapshot in snapshots}
        self.ids = sorted(by_id)
        self.by_id = by_id

    def fitting(self, first_id: int, final_id: int, prev_id: int) -> Snapshot | None:
        """A snapshot ``L`` with ``pu == L`` or ``U <= L <= u``, or None."""
        ids = self.ids
        at = bisect_left(ids, prev_id)
        if at < len(ids) and ids[at] == prev_id:
            return self.by_id[prev_id]
        at = bisect_left(ids, first_id)
        if at < len(ids) and ids[at] <= final_id:
            return self.by_id[ids[at]]
        return None


def replay_day(inputs: DayInputs, observe: Callable[[Book], None] | None = None) -> Replay:
    """Walk the day's diffs (see the module docstring); ``observe`` sees the book after every applied diff (a
    verification or a consumer that needs every state, not only second ends)."""
    diffs = inputs.diffs
    day_start = inputs.day_start_ms
    day_end = day_start + MS_PER_DAY
    snapshots = _SnapshotIndex(inputs.snapshots)
    book = Book()
    recorder = Recorder(day_start)
    stats = ReplayStats(diffs=len(diffs))
    intervals: list[Interval] = []
    current: Interval | None = None
    if inputs.carried is not None:
        carried = inputs.carried
        book.load(carried.last_update_id, carried.bids, carried.asks, carried.last_event_ms)
        current = Interval(day_start, carried.last_update_id, "carried", None, last_update_id=carried.last_update_id)
        intervals.append(current)

    ticker = _TickerMatch(inputs)
    bids, asks = book.bids, book.asks
    top = (_top(bids), _top(asks)) if current is not None else None
    clock = day_start
    last_ms = day_start
    previous_recv: int | None = None
    for block_start in range(0, len(diffs), BLOCK_DIFFS):
        block = diffs.block(block_start, block_start + BLOCK_DIFFS)
        bid_offsets, bid_prices, bid_qtys = block.bid_offsets, block.bid_prices, block.bid_qtys
        ask_offsets, ask_prices, ask_qtys = block.ask_offsets, block.ask_prices, block.ask_qtys
        for index, (event_ms, first_id, final_id, prev_id, recv_ns) in enumerate(
            zip(block.event_ms, block.first_ids, block.final_ids, block.prev_ids, block.recv_ns, strict=True)
        ):
            clock = max(clock, event_ms)
            if clock >= recorder.next_end:
                recorder.pass_until(clock, book, current is not None)
            if current is not None and prev_id != book.update_id:
                current.to_ms, current.end = clock, "break"
                current.break_after_id, current.break_pu = book.update_id, prev_id
                current.break_after_ms = last_ms
                current.break_after_recv_ns = previous_recv
                current.break_before_recv_ns = recv_ns
                current = None
            previous_recv = recv_ns
            if current is None:
                snapshot = snapshots.fitting(first_id, final_id, prev_id)
                if snapshot is None:
                    continue
                book.load(snapshot.last_update_id, snapshot.bids, snapshot.asks)
                current = Interval(clock, final_id, "snapshot", snapshot.last_update_id)
                intervals.append(current)
                top = None
            bids.apply(bid_prices, bid_qtys, bid_offsets[index], bid_offsets[index + 1])
            asks.apply(ask_prices, ask_qtys, ask_offsets[index], ask_offsets[index + 1])
            book.update_id, book.event_ms = final_id, clock
            current.last_update_id = final_id
            current.diffs += 1
            stats.applied += 1
            last_ms = clock
            after = (_top(bids), _top(asks))
            recorder.count_diff(level_ofi(top, after) if top is not None else None)
            top = after
            if book.is_crossed():
                stats.crossed += 1
                if len(stats.crossed_examples) < MAX_EXAMPLES:
                    stats.crossed_examples.append(
                        {"update_id": final_id, "event_time_ms": clock, "bid": after[0][0][0], "ask": after[1][0][0]}
                    )
            ticker.check(first_id, final_id, after, stats)
            if observe is not None:
                observe(book)
    if current is not None:
        _end_day(current, inputs, day_end, last_ms, previous_recv)
    recorder.pass_until(day_end, book, current is not None, valid_until=current.to_ms if current else None)
    return Replay(intervals, recorder, stats)


def _end_day(current: Interval, inputs: DayInputs, day_end: int, last_ms: int, last_recv_ns: int | None) -> None:
    """Close the interval still open at the end of the day's diffs."""
    following = inputs.next_day
    if following is None:
        current.to_ms, current.end = last_ms + 1, "end_of_data"
    elif following.prev_id == current.last_update_id:
        current.to_ms, current.end = day_end, "continues"
    else:
        current.to_ms, current.end = day_end, "break"
        current.break_after_id, current.break_pu = current.last_update_id, following.prev_id
        current.break_after_ms = last_ms
        current.break_after_recv_ns = last_recv_ns
        current.break_before_recv_ns = following.recv_ns


class _TickerMatch:
    """bookTicker against the book: for an applied diff ``[U, u]``, the last ticker update with an id in that window
    is the best bid/ask at ``u`` (bookTicker reports every change of the top), so the two must agree.

    A window is judged only when a ticker with an id after it was recorded: the two streams are published and
    received independently, so where the recording ends (or the day's tickers do) the last tickers of the final
    window may be missing while its diff arrived, and the earlier ticker found would be a false disagreement."""

    def __init__(self, inputs: DayInputs):
        tickers = inputs.tickers
        self.ids = tickers.update_ids.tolist()
        self.bid_prices, self.bid_qtys = tickers.bid_prices.tolist(), tickers.bid_qtys.tolist()
        self.ask_prices, self.ask_qtys = tickers.ask_prices.tolist(), tickers.ask_qtys.tolist()
        self.next = 0

    def check(
        self,
        first_id: int,
        final_id: int,
        after: tuple[tuple[list[int], list[int]], tuple[list[int], list[int]]],
        stats: ReplayStats,
    ) -> None:
        """Compare the book after diff ``[first_id, final_id]`` with the last ticker of its window, if any."""
        ids = self.ids
        at = self.next
        if at < len(ids) and ids[at] < first_id:
            at = bisect_left(ids, first_id, at)
        stop = at
        while stop < len(ids) and ids[stop] <= final_id:
            stop += 1
        self.next = stop
        if stop == at or stop == len(ids):
            return
        last = stop - 1
        (bid_p, bid_q), (ask_p, ask_q) = after
        stats.ticker_compared += 1
        if (
            bid_p
            and ask_p
            and bid_p[0] == self.bid_prices[last]
            and bid_q[0] == self.bid_qtys[last]
            and ask_p[0] == self.ask_prices[last]
            and ask_q[0] == self.ask_qtys[last]
        ):
            stats.ticker_agreed += 1
        elif len(stats.ticker_disagreements) < MAX_EXAMPLES:
            stats.ticker_disagreements.append(
                {
                    "diff_final_update_id": final_id,
                    "ticker_update_id": ids[last],
                    "book_bid": bid_p[0] if bid_p else -1,
                    "ticker_bid": self.bid_prices[last],
                    "book_ask": ask_p[0] if ask_p else -1,
                    "ticker_ask": self.ask_prices[last],
                }
            )

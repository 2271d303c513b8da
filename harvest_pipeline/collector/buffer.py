"""The one bounded queue between the sockets (asyncio thread) and the segment writer (its own thread), and the ledger
of what it refused.

``offer`` never blocks and never grows the queue past its line and byte bounds: a line that does not fit is refused,
and the caller counts it in the ``DropLedger`` (per stream, with the receive-time range), which the writer turns into
``write_loss`` records before anything else as soon as writing works again. Nothing is ever put back.

The byte bound covers everything the collector holds in memory for unwritten lines: each line is charged its payload
plus ``LINE_OVERHEAD_BYTES`` for the Python objects around it, and a chunk the writer has taken stays charged until
``release`` (after it was written). So ``queue_max_bytes`` bounds memory whether the disk is fast, slow or full.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from harvest_pipeline.collector.sequencing import MAX_ID, extract_int
from harvest_pipeline.segments import KIND_BAD_FRAME, KIND_FRAME, KIND_REST_TRADE, Line

LINE_OVERHEAD_BYTES = 160
"""Measured cost of a queued line beyond its payload: the Line tuple, the bytes header, the deque slot and a share
of the receive-time int (CPython 3.11, 64-bit)."""


def charged_bytes(lines: Iterable[Line]) -> int:
    """What ``lines`` cost against the queue's byte bound."""
    total = count = 0
    for line in lines:
        total += len(line.data)
        count += 1
    return total + count * LINE_OVERHEAD_BYTES


class BoundedLineQueue:
    """A FIFO of encoded lines bounded by count and charged bytes, for exactly one producer and one consumer thread.

    Lock-free under the GIL: ``deque.append``/``popleft`` are atomic, and each counter is written by one thread only
    (the producer adds to ``_added``, the consumer to ``_released``), so the hot path pays no lock.
    """

    def __init__(self, max_lines: int, max_bytes: int):
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._items: deque[Line] = deque()
        self._added = 0
        self._released = 0
        self._held_lines = 0
        self._consumer_waiting = False
        self._ready = threading.Event()

    def offer(self, line: Line) -> bool:
        """Append ``line`` if it fits; returns False (and changes nothing) when the queue is full."""
        size = len(line.data) + LINE_OVERHEAD_BYTES
        if (
            len(self._items) + self._held_lines >= self.max_lines
            or self._added - self._released + size > self.max_bytes
        ):
            return False
        self._items.append(line)
        self._added += size
        if self._consumer_waiting:
            self._consumer_waiting = False
            self._ready.set()
        return True

    def offer_many(self, lines: list[Line]) -> list[Line]:
        """Append ``lines`` in order as far as they fit; returns those refused (the queue never exceeds its bounds)."""
        if not lines:
            return []
        size = charged_bytes(lines)
        if (
            len(self._items) + self._held_lines + len(lines) <= self.max_lines
            and self._added - self._released + size <= self.max_bytes
        ):
            self._items.extend(lines)
            self._added += size
            if self._consumer_waiting:
                self._consumer_waiting = False
                self._ready.set()
            return []
        return [line for line in lines if not self.offer(line)]

    def take_chunk(self, max_bytes: int, timeout: float) -> list[Line]:
        """Up to ``max_bytes`` of the oldest lines (at least one if any), waiting up to ``timeout`` s for the first.

        The lines stay charged against the bounds until ``release``: taking them out makes no room for new ones.
        """
        if not self._items and timeout > 0:
            self._ready.clear()
            self._consumer_waiting = True
            if not self._items:
                self._ready.wait(timeout)
            self._consumer_waiting = False
        items = self._items
        chunk: list[Line] = []
        size = 0
        while items and size < max_bytes:
            line = items.popleft()
            chunk.append(line)
            size += len(line.data)
        self._held_lines += len(chunk)
        return chunk

    def release(self, lines: list[Line]) -> None:
        """Free the room of lines taken with ``take_chunk`` (written, or given up and counted as lost)."""
        self._held_lines -= len(lines)
        self._released += charged_bytes(lines)

    def wake(self) -> None:
        """Interrupt a waiting ``take_chunk`` (shutdown)."""
        self._ready.set()

    @property
    def depth(self) -> int:
        """Lines waiting, including a chunk the writer holds."""
        return len(self._items) + self._held_lines

    @property
    def bytes(self) -> int:
        """Bytes charged for lines waiting, including a chunk the writer holds."""
        return self._added - self._released


@dataclass
class StreamLoss:
    """Lines of one stream that were received but never written: how many, their bytes and when they arrived, and for
    aggregate trades the smallest and largest trade id among them (what a REST backfill must fetch again)."""

    lines: int
    bytes: int
    first_recv_ns: int
    last_recv_ns: int
    first_id: int | None = None
    last_id: int | None = None

    def merge(self, other: StreamLoss) -> None:
        """Add ``other`` to this loss."""
        self.lines += other.lines
        self.bytes += other.bytes
        self.first_recv_ns = min(self.first_recv_ns, other.first_recv_ns)
        self.last_recv_ns = max(self.last_recv_ns, other.last_recv_ns)
        self.add_ids(other.first_id, other.last_id)

    def add_ids(self, first_id: int | None, last_id: int | None) -> None:
        """Widen the trade-id range to cover ``first_id..last_id`` (None: the lines carried no id)."""
        if first_id is not None:
            self.first_id = first_id if self.first_id is None else min(self.first_id, first_id)
        if last_id is not None:
            self.last_id = last_id if self.last_id is None else max(self.last_id, last_id)

    def copy(self) -> StreamLoss:
        """An independent copy."""
        return StreamLoss(**vars(self))


LossKey = tuple[str, str]
"""(stream, reason) of a loss; lines without a stream are counted under ``<kind>``."""

REASON_QUEUE_FULL = "queue full"
FRAME_KINDS = frozenset({KIND_FRAME, KIND_BAD_FRAME})


def loss_reason(reason: str, kind: str) -> str:
    """The reason a lost line is counted under: ``reason`` for an exchange frame, ``"<reason> (<kind> records)"`` for
    anything else (REST trades, gap and backfill records share their stream's name, and a stream's frame accounting,
    sent = stored + lost, must not count them)."""
    return reason if kind in FRAME_KINDS else f"{reason} ({kind} records)"


def is_frame_loss(reason: str) -> bool:
    """Whether a ``write_loss`` reason counts lost exchange frames (see ``loss_reason``)."""
    return not reason.endswith(" records)")


def loss_stream(line: Line) -> str:
    """The stream a lost line is counted under."""
    return line.stream or f"<{line.kind}>"


def lost_trade_id(line: Line) -> int | None:
    """The aggregate trade id of a lost aggTrade frame or REST trade (None for anything else, or an implausible id)."""
    if line.kind not in (KIND_FRAME, KIND_REST_TRADE) or not line.stream or not line.stream.endswith("@aggTrade"):
        return None
    trade_id = extract_int(line.data, b'"a":')
    return trade_id if trade_id is not None and 0 <= trade_id <= MAX_ID else None


class DropLedger:
    """Per-stream losses not yet written down. Bounded by the number of (stream, reason) pairs, never by lines.

    The readers ``record`` refused lines; the writer ``take``s the losses, tries to write them and gives back what it
    could not write with ``restore``, so a loss record can never be lost to a failing disk. ``total`` keeps counting
    for metrics and ``last_drop_ns`` tells health whether lines are being dropped right now.
    """

    def __init__(self) -> None:
        self._pending: dict[LossKey, StreamLoss] = {}
        self._lock = threading.Lock()
        self.total: dict[str, int] = {}
        self.last_drop_ns: int | None = None

    def record(self, line: Line, reason: str = REASON_QUEUE_FULL) -> None:
        """Count one line that will never be written."""
        stream = loss_stream(line)
        size = len(line.data)
        trade_id = lost_trade_id(line)
        reason = loss_reason(reason, line.kind)
        with self._lock:
            loss = self._pending.get((stream, reason))
            if loss is None:
                self._pending[(stream, reason)] = StreamLoss(1, size, line.recv_ns, line.recv_ns, trade_id, trade_id)
            else:
                loss.lines += 1
                loss.bytes += size
                loss.first_recv_ns = min(loss.first_recv_ns, line.recv_ns)
                loss.last_recv_ns = max(loss.last_recv_ns, line.recv_ns)
                loss.add_ids(trade_id, trade_id)
            self.total[stream] = self.total.get(stream, 0) + 1
        self.last_drop_ns = line.recv_ns

    def record_all(self, lines: Iterable[Line], reason: str) -> None:
        """Count many lines that will never be written (the writer giving up at shutdown)."""
        for line in lines:
            self.record(line, reason)

    def take(self) -> dict[LossKey, StreamLoss]:
        """The losses recorded since the previous call (and forget them)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def restore(self, losses: dict[LossKey, StreamLoss]) -> None:
        """Give back losses that could not be written (merged with any recorded meanwhile; totals unchanged)."""
        with self._lock:
            for key, loss in losses.items():
                current = self._pending.get(key)
                if current is None:
                    self._pending[key] = loss.copy()
                else:
                    current.merge(loss)

    def peek(self) -> dict[LossKey, StreamLoss]:
        """A copy of the losses not yet written (for the loss journal)."""
        with self._lock:
            return {key: loss.copy() for key, loss in self._pending.items()}

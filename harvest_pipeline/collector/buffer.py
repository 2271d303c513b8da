"""The one bounded queue between the sockets (asyncio thread) and the segment writer (its own thread).

``offer`` never blocks and never grows the queue past its line and byte bounds: a line that does not fit is refused,
and the caller counts it in the ``DropLedger`` (per stream, with the receive-time range), which the writer turns into
``write_loss`` records as soon as writing works again. Nothing is ever put back.
"""

from __future__ import annotations

import operator
import threading
from collections import deque
from dataclasses import dataclass

from harvest_pipeline.segments import Line

_line_data = operator.attrgetter("data")


class BoundedLineQueue:
    """A FIFO of encoded lines bounded by count and total bytes, for exactly one producer and one consumer thread.

    Lock-free under the GIL: ``deque.append``/``popleft`` are atomic, and each byte counter is written by one thread
    only (the producer adds to ``_added``, the consumer to ``_taken``), so the hot path pays no lock.
    """

    def __init__(self, max_lines: int, max_bytes: int):
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._items: deque[Line] = deque()
        self._added = 0
        self._taken = 0
        self._consumer_waiting = False
        self._ready = threading.Event()

    def offer(self, line: Line) -> bool:
        """Append ``line`` if it fits; returns False (and changes nothing) when the queue is full."""
        size = len(line.data)
        if len(self._items) >= self.max_lines or self._added - self._taken + size > self.max_bytes:
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
        size = sum(map(len, map(_line_data, lines)))
        if len(self._items) + len(lines) <= self.max_lines and self._added - self._taken + size <= self.max_bytes:
            self._items.extend(lines)
            self._added += size
            if self._consumer_waiting:
                self._consumer_waiting = False
                self._ready.set()
            return []
        return [line for line in lines if not self.offer(line)]

    def take_all(self, timeout: float) -> list[Line]:
        """Everything queued, oldest first, waiting up to ``timeout`` seconds for the first line."""
        if not self._items and timeout > 0:
            self._ready.clear()
            self._consumer_waiting = True
            if not self._items:
                self._ready.wait(timeout)
            self._consumer_waiting = False
        popleft = self._items.popleft
        items = [popleft() for _ in range(len(self._items))]
        self._taken += sum(len(line.data) for line in items)
        return items

    def wake(self) -> None:
        """Interrupt a waiting ``take_all`` (shutdown)."""
        self._ready.set()

    @property
    def depth(self) -> int:
        """Lines waiting."""
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Bytes waiting."""
        return self._added - self._taken


@dataclass
class StreamLoss:
    """Lines of one stream refused by a full queue: how many and when they were received."""

    lines: int
    bytes: int
    first_recv_ns: int
    last_recv_ns: int


class DropLedger:
    """Per-stream counts of refused lines since the last ``take``; ``total`` keeps counting for metrics."""

    def __init__(self) -> None:
        self._pending: dict[str, StreamLoss] = {}
        self._lock = threading.Lock()
        self.total: dict[str, int] = {}

    def record(self, line: Line) -> None:
        """Count one refused line."""
        stream = line.stream or f"<{line.kind}>"
        with self._lock:
            loss = self._pending.get(stream)
            if loss is None:
                self._pending[stream] = StreamLoss(1, len(line.data), line.recv_ns, line.recv_ns)
            else:
                loss.lines += 1
                loss.bytes += len(line.data)
                loss.last_recv_ns = line.recv_ns
            self.total[stream] = self.total.get(stream, 0) + 1

    def take(self) -> dict[str, StreamLoss]:
        """The losses since the previous call (and forget them)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

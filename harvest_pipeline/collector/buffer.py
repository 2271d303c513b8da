"""The one bounded queue between the sockets (asyncio thread) and the segment writer (its own thread).

``offer`` never blocks and never grows the queue past its line and byte bounds: a line that does not fit is refused,
and the caller counts it in the ``DropLedger`` (per stream, with the receive-time range), which the writer turns into
``write_loss`` records as soon as writing works again. Nothing is ever put back.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from harvest_pipeline.segments import Line


class BoundedLineQueue:
    """A FIFO of encoded lines bounded by count and total bytes; one producer thread, one consumer thread."""

    def __init__(self, max_lines: int, max_bytes: int):
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._items: deque[Line] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()

    def offer(self, line: Line) -> bool:
        """Append ``line`` if it fits; returns False (and changes nothing) when the queue is full."""
        size = len(line.data)
        with self._lock:
            if len(self._items) >= self.max_lines or self._bytes + size > self.max_bytes:
                return False
            self._items.append(line)
            self._bytes += size
            if len(self._items) == 1:
                self._ready.set()
        return True

    def take_all(self, timeout: float) -> list[Line]:
        """Everything queued, oldest first, waiting up to ``timeout`` seconds for the first line."""
        if not self._items:
            self._ready.wait(timeout)
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._bytes = 0
            self._ready.clear()
        return items

    def wake(self) -> None:
        """Interrupt a waiting ``take_all`` (shutdown, seal timer)."""
        self._ready.set()

    @property
    def depth(self) -> int:
        """Lines waiting."""
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Bytes waiting."""
        return self._bytes


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

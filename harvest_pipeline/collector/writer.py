"""The segment writer: one thread that drains the bounded queue into the open segment, seals it by a timer, and
survives disk failures.

Disk errors (ENOSPC, EIO, EACCES, ...) are retried with capped exponential backoff while the batch in hand waits;
meanwhile the queue fills and the readers count what it refuses. When a write succeeds again, the refused lines are
written down as ``write_loss`` records (one per stream, with count and receive-time range). Nothing is put back.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from harvest_pipeline.collector.buffer import BoundedLineQueue, DropLedger
from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.metrics import CollectorMetrics
from harvest_pipeline.segments import FileSystem, Line, OpenSegment, SegmentNamer, encode_control

log = logging.getLogger(__name__)

T = TypeVar("T")
DISK_CHECK_INTERVAL_S = 10.0


class WriterAbandoned(Exception):
    """The shutdown deadline passed while the disk was still failing."""


class SegmentWriter:
    """Owns the open segment. ``start`` runs it in a thread; ``stop`` drains, seals and joins."""

    def __init__(
        self,
        config: CollectorConfig,
        queue: BoundedLineQueue,
        ledger: DropLedger,
        namer: SegmentNamer,
        open_dir: Path,
        sealed_dir: Path,
        fs: FileSystem,
        clock: Callable[[], int],
        metrics: CollectorMetrics,
    ):
        self._config = config
        self._queue = queue
        self._ledger = ledger
        self._namer = namer
        self._open_dir = open_dir
        self._sealed_dir = sealed_dir
        self._fs = fs
        self._clock = clock
        self._metrics = metrics
        self.conn_id = f"{namer.boot_id}-writer"
        self._seq = 0
        self._segment: OpenSegment | None = None
        self._pending: list[Line] = []
        self._stopping = threading.Event()
        self._abandon_at: float | None = None
        self._last_fsync = time.monotonic()
        self._next_disk_check = 0.0
        self._disk_low = False
        self.lost_on_exit = 0
        self.healthy = True
        self._thread = threading.Thread(target=self._run, name="segment-writer", daemon=True)

    def control_line(self, kind: str, stream: str | None = None, **fields: object) -> Line:
        """A control record issued by the writer itself (recovered, write_loss), numbered in its own sequence."""
        self._seq += 1
        return encode_control(self._clock(), self.conn_id, self._seq, kind, stream, **fields)

    def add_initial(self, lines: list[Line]) -> None:
        """Lines to write before anything from the queue (startup recovery reports)."""
        self._pending.extend(lines)

    def start(self) -> None:
        """Run the writer thread."""
        self._thread.start()

    def stop(self, deadline_s: float) -> bool:
        """Drain the queue, seal the open segment and join; True if everything was written within ``deadline_s``."""
        self._abandon_at = time.monotonic() + deadline_s
        self._stopping.set()
        self._queue.wake()
        self._thread.join(deadline_s + 1.0)
        return not self._thread.is_alive() and self.lost_on_exit == 0

    @property
    def alive(self) -> bool:
        """Whether the writer thread is running."""
        return self._thread.is_alive()

    @property
    def segment_name(self) -> str | None:
        """The name of the segment being written, if one is open."""
        return None if self._segment is None else self._segment.name

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._pending.extend(self._queue.take_all(self._wait_s()))
                self._cycle()
            self._pending.extend(self._queue.take_all(0))
            self._cycle()
            self._retry("seal segment", self._seal)
        except WriterAbandoned:
            self.lost_on_exit = len(self._pending) + self._queue.depth
            log.error("shutdown deadline passed with the disk still failing: %d records not written", self.lost_on_exit)
        except Exception:
            self.healthy = False
            log.exception("segment writer crashed; the collector will exit so its supervisor restarts it")

    def _cycle(self) -> None:
        losses = self._ledger.take()
        for stream, loss in losses.items():
            self._pending.append(
                self.control_line(
                    "write_loss",
                    stream,
                    reason="queue full",
                    lines=loss.lines,
                    bytes=loss.bytes,
                    first_recv_ns=loss.first_recv_ns,
                    last_recv_ns=loss.last_recv_ns,
                )
            )
            log.warning("queue was full: %d records of %s dropped (write_loss recorded)", loss.lines, stream)
        if self._pending:
            self._retry("append to segment", self._append_pending)
        if self._segment is not None and time.monotonic() - self._last_fsync >= self._config.fsync_interval_s:
            self._retry("fsync segment", self._segment.sync)
            self._last_fsync = time.monotonic()
        if self._segment is not None and self._seal_due():
            self._retry("seal segment", self._seal)
        self._check_disk()

    def _wait_s(self) -> float:
        wait = self._config.fsync_interval_s
        if self._segment is not None:
            age_s = (self._clock() - self._segment.opened_at_ns) / 1e9
            wait = min(wait, self._config.segment_max_age_s - age_s)
        return max(0.001, wait)

    def _seal_due(self) -> bool:
        assert self._segment is not None
        age_s = (self._clock() - self._segment.opened_at_ns) / 1e9
        return age_s >= self._config.segment_max_age_s or self._segment.size >= self._config.segment_max_bytes

    def _append_pending(self) -> None:
        if self._segment is None:
            opened = self._clock()
            self._segment = OpenSegment(
                self._open_dir, self._namer.next_name(opened), self._namer.collector_id, opened, self._fs
            )
        self._segment.append(self._pending)
        now = self._clock()
        self._metrics.write_latency.observe(max(0, now - self._pending[0].recv_ns) / 1e9)
        self._metrics.lines_written.inc(len(self._pending))
        self._pending = []

    def _seal(self) -> None:
        if self._segment is None:
            return
        started = time.monotonic()
        meta = self._segment.seal(self._sealed_dir, self._clock())
        elapsed = time.monotonic() - started
        self._segment = None
        if meta is not None:
            self._metrics.segments_sealed.inc()
            self._metrics.seal_seconds.observe(elapsed)
            log.info("sealed %s: %d records, %d bytes in %.0f ms", meta.name, meta.lines, meta.bytes, elapsed * 1e3)

    def _retry(self, what: str, action: Callable[[], T]) -> T:
        delay = self._config.write_retry_initial_s
        while True:
            try:
                result = action()
            except OSError as exc:
                self.healthy = False
                self._metrics.writer_healthy.set(0)
                self._metrics.write_errors.labels(what.split()[0]).inc()
                if self._abandon_at is not None and time.monotonic() + delay > self._abandon_at:
                    raise WriterAbandoned(what) from exc
                where = self._segment.path if self._segment is not None else self._open_dir
                log.warning("cannot %s %s: %s (will retry in %.1f s)", what, where, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, self._config.write_retry_max_s)
                continue
            if not self.healthy:
                log.info("disk writes work again (%s)", what)
                self.healthy = True
                self._metrics.writer_healthy.set(1)
            return result

    def _check_disk(self) -> None:
        now = time.monotonic()
        if now < self._next_disk_check:
            return
        self._next_disk_check = now + DISK_CHECK_INTERVAL_S
        try:
            free = shutil.disk_usage(self._open_dir).free
        except OSError:
            return
        self._metrics.disk_free_bytes.set(free)
        low = free < self._config.disk_free_warn_bytes
        if low and not self._disk_low:
            log.warning("low disk space under %s: %.1f GB free", self._open_dir, free / 1024**3)
        self._disk_low = low

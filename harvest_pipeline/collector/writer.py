"""The segment writer: one thread that drains the bounded queue into the open segment, seals segments by a timer, and
survives disk failures without losing a loss record.

Each write attempt goes: start-up records (recovery, crash windows), then loss records, then one bounded chunk of
queued lines. A failed attempt keeps what it could write (a full disk's last free bytes are used at once) and is
retried with capped exponential backoff; meanwhile the queue fills and the readers count what it refuses. Losses are
kept apart from the data (``DropLedger``), so they are written first as soon as writing works again; while they
cannot be written they are kept in the ``LossJournal`` (space reserved at start-up), which the next start reads.
A segment that cannot be sealed is set aside and retried on its own timer while appending goes on into a new one.
Every segment, written or recovered, names the collector's market in its sidecar (``SegmentMeta.market``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from harvest_pipeline.collector.buffer import BoundedLineQueue, DropLedger, LossKey, StreamLoss
from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.loss_journal import LossJournal
from harvest_pipeline.collector.metrics import CollectorMetrics
from harvest_pipeline.segments import (
    KIND_SNAPSHOT,
    FileSystem,
    Line,
    OpenSegment,
    PartialAppend,
    SegmentNamer,
    encode_control,
    recover_open_segments,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_CHUNK_BYTES = 1024 * 1024
MIN_CHUNK_BYTES = 16 * 1024
REASON_SHUTDOWN = "not written: disk still failing at shutdown"


class WriterAbandoned(Exception):
    """The shutdown deadline passed while the disk was still failing."""


class WriterEvents:
    """What the writer tells the rest of the collector (called on the writer thread; keep them quick)."""

    def losses_written(self, losses: dict[LossKey, StreamLoss]) -> None:
        """``write_loss`` records for these losses are now in a segment."""

    def snapshots_written(self, lines: list[Line]) -> None:
        """These depth snapshot records are now in a segment."""


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
        events: WriterEvents | None = None,
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
        self._events = events or WriterEvents()
        self.journal = LossJournal(open_dir / "loss-journal", fs)
        self.conn_id = f"{namer.boot_id}-writer"
        self._seq = 0
        self._chunk_bytes = max(MIN_CHUNK_BYTES, min(MAX_CHUNK_BYTES, config.queue_max_bytes // 16))
        self._segment: OpenSegment | None = None
        self._unsealed: list[OpenSegment] = []
        self._initial: list[Line] = []
        self._chunk: list[Line] = []
        self._loss_lines: list[Line] = []
        self._losses_in_hand: list[tuple[LossKey, StreamLoss]] = []
        self._journaled: dict[LossKey, StreamLoss] | None = None
        self._stopping = threading.Event()
        self._abandon_at: float | None = None
        self._last_fsync = time.monotonic()
        self._next_seal_attempt = 0.0
        self._seal_delay = config.write_retry_initial_s
        self.lost_on_exit = 0
        self.state = "starting"
        self.healthy = True
        self.last_error: str | None = None
        self.seal_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="segment-writer", daemon=True)

    def control_line(self, kind: str, stream: str | None = None, **fields: object) -> Line:
        """A control record issued by the writer itself (recovered, write_loss, ...), numbered in its own sequence."""
        self._seq += 1
        return encode_control(self._clock(), self.conn_id, self._seq, kind, stream, **fields)

    def add_initial(self, lines: list[Line]) -> None:
        """Lines to write before anything from the queue (start-up reports)."""
        self._initial.extend(lines)

    def start(self) -> None:
        """Run the writer thread."""
        self._thread.start()

    def stop(self, deadline_s: float) -> bool:
        """Drain the queue, seal every segment and join; True if everything was written within ``deadline_s``."""
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

    @property
    def unsealed(self) -> list[str]:
        """Segments whose seal failed and is being retried."""
        return [segment.name for segment in self._unsealed]

    def _run(self) -> None:
        try:
            self.state = "recovering"
            self._read_journal()
            self._retry("recover open segments", self._start_up)
            self.state = "writing"
            while not self._stopping.is_set():
                self._cycle(self._wait_s())
            self._drain()
            self._retry("seal segment", self._seal_everything)
            self.state = "stopped"
        except WriterAbandoned:
            self._give_up()
        except Exception:
            self.healthy = False
            self.state = "crashed"
            log.exception("segment writer crashed; the collector will exit so its supervisor restarts it")
        finally:
            self.journal.close()

    def _read_journal(self) -> None:
        """Losses an earlier run could not write become pending losses of this one (written first)."""
        try:
            unwritten = self.journal.read()
        except (OSError, ValueError) as exc:
            log.error("cannot read the loss journal %s: %s", self.journal.path, exc)
            return
        if unwritten:
            lines = sum(loss.lines for loss in unwritten.values())
            log.warning("loss journal: %d records an earlier run could not write are recorded as lost", lines)
            self._ledger.restore(unwritten)

    def _start_up(self) -> None:
        """Reserve the loss journal's space and seal what a crash left open (repeatable after a failure)."""
        self.journal.reserve()
        recovered_segments = recover_open_segments(
            self._open_dir, self._sealed_dir, self._namer.collector_id, self._fs, market=self._config.market
        )
        for recovered in recovered_segments:
            lines = recovered.meta.lines if recovered.meta is not None else 0
            log.warning(
                "recovered open segment %s: %d records sealed, %d torn line(s) cut",
                recovered.name,
                lines,
                recovered.torn_lines_cut,
            )
            self._initial.append(
                self.control_line(
                    "recovered", segment=recovered.name, lines=lines, torn_lines_cut=recovered.torn_lines_cut
                )
            )

    def _cycle(self, wait_s: float) -> None:
        if not self._chunk:
            self._chunk = self._queue.take_chunk(self._chunk_bytes, wait_s)
        self._retry("append to segment", self._write_pending)
        self._fsync_if_due()
        if self._segment is not None and self._seal_due(self._segment):
            self._unsealed.append(self._segment)
            self._segment = None
            self._next_seal_attempt = 0.0
        self._seal_set_aside()

    def _drain(self) -> None:
        """Write everything still queued (the readers have stopped)."""
        while True:
            if not self._chunk:
                self._chunk = self._queue.take_chunk(self._chunk_bytes, 0)
            self._retry("append to segment", self._write_pending)
            if not self._chunk and not self._queue.depth and not self._ledger.peek():
                return

    def _wait_s(self) -> float:
        wait = self._config.fsync_interval_s
        if self._segment is not None:
            age_s = (self._clock() - self._segment.opened_at_ns) / 1e9
            wait = min(wait, self._config.segment_max_age_s - age_s)
        if self._unsealed:
            wait = min(wait, self._next_seal_attempt - time.monotonic())
        return max(0.001, wait)

    def _seal_due(self, segment: OpenSegment) -> bool:
        age_s = (self._clock() - segment.opened_at_ns) / 1e9
        return age_s >= self._config.segment_max_age_s or segment.size >= self._config.segment_max_bytes

    def _write_pending(self) -> None:
        """One write attempt: start-up records, then losses, then the chunk in hand. Raises ``OSError``."""
        try:
            if self._initial:
                try:
                    self._append(self._initial)
                except PartialAppend as exc:
                    del self._initial[: exc.lines_written]
                    raise
                self._initial = []
            self._write_losses()
            if self._chunk:
                try:
                    self._append(self._chunk)
                except PartialAppend as exc:
                    self._queue.release(self._chunk[: exc.lines_written])
                    del self._chunk[: exc.lines_written]
                    raise
                self._queue.release(self._chunk)
                self._chunk = []
        except OSError:
            self._journal_unwritten_losses()
            raise

    def _write_losses(self) -> None:
        if not self._loss_lines:
            self._losses_in_hand = list(self._ledger.take().items())
            self._loss_lines = [self._loss_line(key, loss) for key, loss in self._losses_in_hand]
        if not self._loss_lines:
            return
        try:
            self._append(self._loss_lines)
        except PartialAppend as exc:
            del self._loss_lines[: exc.lines_written]
            self._report_losses_written(self._losses_in_hand[: exc.lines_written])
            del self._losses_in_hand[: exc.lines_written]
            raise
        self._loss_lines = []
        self._report_losses_written(self._losses_in_hand)
        self._losses_in_hand = []
        if not self.journal.empty:
            assert self._segment is not None
            self._segment.sync()
            self._write_journal(self._ledger.peek())

    def _loss_line(self, key: LossKey, loss: StreamLoss) -> Line:
        stream, reason = key
        return self.control_line(
            "write_loss",
            stream,
            reason=reason,
            lines=loss.lines,
            bytes=loss.bytes,
            first_recv_ns=loss.first_recv_ns,
            last_recv_ns=loss.last_recv_ns,
            **({"first_id": loss.first_id, "last_id": loss.last_id} if loss.first_id is not None else {}),
        )

    def _report_losses_written(self, written: list[tuple[LossKey, StreamLoss]]) -> None:
        for (stream, reason), loss in written:
            log.warning("%d records of %s were lost (%s); write_loss recorded", loss.lines, stream, reason)
        if written:
            self._events.losses_written(dict(written))

    def _append(self, lines: list[Line]) -> None:
        """Append ``lines`` to the open segment (opened on demand). On ``PartialAppend`` the first
        ``lines_written`` lines are in the file and accounted; the caller drops them from what it retries."""
        if self._segment is None:
            opened = self._clock()
            self._segment = OpenSegment(
                self._open_dir,
                self._namer.next_name(opened),
                self._namer.collector_id,
                opened,
                self._fs,
                market=self._config.market,
            )
        snapshots_before = self._segment.stats.kinds[KIND_SNAPSHOT]
        written, failure = len(lines), None
        try:
            self._segment.append(lines)
        except PartialAppend as exc:
            written, failure = exc.lines_written, exc
        if written:
            self._metrics.write_latency.observe(max(0, self._clock() - lines[0].recv_ns) / 1e9)
            self._metrics.lines_written.inc(written)
            if self._segment.stats.kinds[KIND_SNAPSHOT] != snapshots_before:
                self._events.snapshots_written([line for line in lines[:written] if line.kind == KIND_SNAPSHOT])
        if failure is not None:
            raise failure

    def _journal_unwritten_losses(self) -> None:
        """Keep the journal equal to the losses not yet in a segment (they survive a crash or a failing exit)."""
        unwritten = self._ledger.peek()
        for key, loss in self._losses_in_hand:
            if key in unwritten:
                unwritten[key].merge(loss)
            else:
                unwritten[key] = loss.copy()
        if unwritten != self._journaled and (unwritten or not self.journal.empty):
            self._write_journal(unwritten)

    def _write_journal(self, losses: dict[LossKey, StreamLoss]) -> None:
        try:
            self.journal.write(losses)
            self._journaled = losses
        except OSError as exc:
            log.error("cannot update the loss journal %s: %s", self.journal.path, exc)

    def _fsync_if_due(self) -> None:
        if self._segment is None or time.monotonic() - self._last_fsync < self._config.fsync_interval_s:
            return
        self._last_fsync = time.monotonic()
        try:
            self._segment.sync()
        except OSError as exc:
            self._metrics.write_errors.labels("fsync").inc()
            log.warning("cannot fsync segment %s: %s (will retry)", self._segment.path, exc)

    def _seal_set_aside(self) -> None:
        """Seal segments set aside for sealing, oldest first; a failure is retried later, appending goes on."""
        if not self._unsealed or time.monotonic() < self._next_seal_attempt:
            return
        while self._unsealed:
            segment = self._unsealed[0]
            try:
                self._seal(segment)
            except OSError as exc:
                self._metrics.write_errors.labels("seal").inc()
                self.seal_error = f"cannot seal segment {segment.path}: {exc}"
                log.warning("%s (will retry in %.1f s)", self.seal_error, self._seal_delay)
                self._next_seal_attempt = time.monotonic() + self._seal_delay
                self._seal_delay = min(self._seal_delay * 2, self._config.write_retry_max_s)
                self._metrics.segments_unsealed.set(len(self._unsealed))
                return
            self._unsealed.pop(0)
        if self.seal_error is not None:
            log.info("sealing works again")
        self.seal_error = None
        self._seal_delay = self._config.write_retry_initial_s
        self._metrics.segments_unsealed.set(0)

    def _seal_everything(self) -> None:
        if self._segment is not None:
            self._unsealed.append(self._segment)
            self._segment = None
        while self._unsealed:
            self._seal(self._unsealed[0])
            self._unsealed.pop(0)

    def _seal(self, segment: OpenSegment) -> None:
        started = time.monotonic()
        meta = segment.seal(self._sealed_dir, self._clock())
        elapsed = time.monotonic() - started
        if meta is not None:
            self._metrics.segments_sealed.inc()
            self._metrics.seal_seconds.observe(elapsed)
            log.info("sealed %s: %d records, %d bytes in %.0f ms", meta.name, meta.lines, meta.bytes, elapsed * 1e3)

    def _give_up(self) -> None:
        """The disk kept failing past the shutdown deadline: count everything unwritten as lost, in the journal."""
        data = self._chunk + self._queue.take_chunk(1 << 62, 0)
        self.lost_on_exit = len(data) + len(self._initial)
        self._ledger.record_all(data, REASON_SHUTDOWN)
        self._ledger.record_all(self._initial, REASON_SHUTDOWN)
        self._ledger.restore(dict(self._losses_in_hand))
        self._losses_in_hand, self._loss_lines = [], []
        self._journal_unwritten_losses()
        self.state = "abandoned"
        log.error(
            "shutdown deadline passed with the disk still failing: %d records not written (counted in %s); "
            "%d segment(s) left open for the next start to recover",
            self.lost_on_exit,
            self.journal.path,
            len(self._unsealed) + (self._segment is not None),
        )

    def _retry(self, what: str, action: Callable[[], T]) -> T:
        delay = self._config.write_retry_initial_s
        while True:
            try:
                result = action()
            except OSError as exc:
                self.healthy = False
                self.last_error = f"cannot {what}: {exc}"
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
                self.last_error = None
                self._metrics.writer_healthy.set(1)
            return result

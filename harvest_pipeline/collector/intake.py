"""Where frames enter the collector: the record sink, per-stream state, sequence trackers and gap handling.

Connections call ``emit`` for every record and look streams up in ``entries`` (keyed by the raw stream-name bytes
found in the frame) so the per-frame work is a dict lookup, a few attribute writes, an encode and a queue offer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from harvest_pipeline.collector.book_sync import BookSync
from harvest_pipeline.collector.buffer import BoundedLineQueue, DropLedger
from harvest_pipeline.collector.config import CollectorConfig, is_quiet_stream
from harvest_pipeline.collector.metrics import CollectorMetrics
from harvest_pipeline.collector.sequencing import AggTradeSequence, DepthSequence, Gap, sequence_for
from harvest_pipeline.collector.streams import StreamState
from harvest_pipeline.segments import Line, encode_control

log = logging.getLogger(__name__)


class StreamEntry(NamedTuple):
    """What the hot path needs about a subscribed stream."""

    name: str
    state: StreamState
    sequence: AggTradeSequence | DepthSequence | None
    symbol: str


class Intake:
    """Shared by all connections of one collector process (all on the asyncio thread)."""

    def __init__(
        self,
        config: CollectorConfig,
        queue: BoundedLineQueue,
        ledger: DropLedger,
        clock: Callable[[], int],
        metrics: CollectorMetrics,
        book: BookSync,
    ):
        self.clock = clock
        self.book = book
        self.queue = queue
        self.ledger = ledger
        self.metrics = metrics
        self.streams: dict[str, StreamState] = {}
        self.entries: dict[bytes, StreamEntry] = {}
        self.request_snapshot: Callable[[str, str], None] = lambda symbol, reason: None
        self.request_backfill: Callable[[str, int, int, str], None] = lambda symbol, first, last, cause: None
        self._depth_chain = config.exchange.depth_chain
        self.add_streams(config.streams_by_route())

    def add_streams(self, by_route: Mapping[str, Iterable[str]]) -> None:
        """Start tracking streams (route -> names) before a connection subscribes them."""
        for route, names in by_route.items():
            for name in names:
                state = StreamState(name, route, quiet=is_quiet_stream(name))
                self.streams[name] = state
                symbol = name.partition("@")[0].upper()
                self.entries[name.encode()] = StreamEntry(name, state, sequence_for(name, self._depth_chain), symbol)

    def unwatch_streams(self, names: Iterable[str]) -> None:
        """Stop reporting and watching streams about to be closed (/healthz, metrics, watchdog); frames still
        arriving on their connection until it closes are recorded as before (``forget_streams`` afterwards)."""
        for name in names:
            self.streams.pop(name, None)

    def forget_streams(self, names: Iterable[str]) -> None:
        """Drop streams no connection carries any more: a frame naming one is now a ``bad_frame``."""
        for name in names:
            self.streams.pop(name, None)
            self.entries.pop(name.encode(), None)

    def emit(self, line: Line) -> None:
        """Queue one record; if the queue is full, count it as lost (the writer records the loss later)."""
        if not self.queue.offer(line):
            self._refused(line)

    def emit_many(self, lines: list[Line]) -> None:
        """Queue records in order; whatever does not fit is counted as lost."""
        for refused in self.queue.offer_many(lines):
            self._refused(refused)

    def _refused(self, line: Line) -> None:
        self.ledger.record(line)
        symbol = self.book.symbol_of(line.stream) if line.stream else None
        if symbol is not None:
            self.book.mark_unsynced(symbol, line.recv_ns)

    def after_sequence_event(
        self, entry: StreamEntry, gap: Gap | None, conn_id: str, next_seq: Callable[[], int]
    ) -> None:
        """Record a gap found on ``entry``'s id sequence and/or ask for the depth snapshot it needs."""
        if gap is not None:
            self.record_gap(gap, conn_id, next_seq())
        sequence = entry.sequence
        if isinstance(sequence, DepthSequence) and sequence.needs_snapshot:
            sequence.needs_snapshot = False
            self.book.mark_unsynced(entry.symbol, self.clock())
            self.request_snapshot(entry.symbol, "start" if gap is None else sequence.BREAK)

    def record_gap(self, gap: Gap, conn_id: str, seq: int) -> None:
        """Write a ``gap`` record, count it and log one line."""
        self.metrics.gaps.labels(gap.stream, gap.reason).inc()
        log.warning(
            "gap on %s (%s): expected %d, got %d, missing %s",
            gap.stream,
            gap.reason,
            gap.expected,
            gap.got,
            gap.missing,
        )
        self.emit(
            encode_control(
                self.clock(),
                conn_id,
                seq,
                "gap",
                gap.stream,
                reason=gap.reason,
                expected=gap.expected,
                got=gap.got,
                missing=gap.missing,
            )
        )
        if gap.missing and gap.stream.endswith("@aggTrade"):
            self.request_backfill(gap.stream.partition("@")[0].upper(), gap.expected, gap.got - 1, gap.reason)

"""The time the previous run of this collector id was down: one ``gap`` record per stream it recorded, and the id
trackers resumed after the last id it stored (``resume.py`` reads where it stopped).

At start, for the streams known then (the explicit symbols, and what the selectors resolved to before the first
connection). When the selectors could not be resolved at start, every stream of the previous run's tail is read, and
the down time of the symbols the first successful resolution adds is declared then (from their first frames on, the
ids missed meanwhile surface as gaps). Later changes of the symbols declare nothing: a symbol that enters later was
not being recorded, the collector was not down.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.intake import Intake
from harvest_pipeline.collector.resume import LastRun, StreamPosition, find_last_run, id_key_of
from harvest_pipeline.collector.writer import SegmentWriter
from harvest_pipeline.segments import Line, encode_control

log = logging.getLogger(__name__)

LineMaker = Callable[..., Line]


class DownTime:
    """Declares the previous run's down time, at start and, selectors unresolved then, at their first resolution."""

    def __init__(self, config: CollectorConfig, intake: Intake, open_dir: Path, sealed_root: Path, boot_id: str):
        self._config = config
        self._intake = intake
        self._open_dir = open_dir
        self._sealed_root = sealed_root
        self._conn_id = f"{boot_id}-symbols"
        self._seq = itertools.count(1)
        self._waiting: LastRun | None = None
        """The previous run's end while the selectors are not resolved."""

    def declare_at_start(self, writer: SegmentWriter, selectors_unresolved: bool) -> None:
        """Before the writer starts (it recovers the segment read here): the records go first into the segment."""
        entries = self._intake.entries.values()
        id_keys = {entry.name: id_key_of(entry.name) for entry in entries if not entry.state.quiet}
        try:
            last = find_last_run(
                self._open_dir,
                self._sealed_root,
                self._config.collector_id,
                id_keys,
                id_key_of if selectors_unresolved else None,
            )
        except OSError as exc:
            log.error("cannot read where the previous run stopped: %s; its down time is not declared", exc)
            return
        if last is not None:
            writer.add_initial(self._records(last, list(self._intake.streams), writer.control_line))
            self._waiting = last if selectors_unresolved else None

    def declare_for_first_symbols(self, symbols: list[str]) -> None:
        """The selectors resolved for the first time after a start without them: declare the down time of the
        ``symbols`` they add that the previous run recorded (before their connections open)."""
        last = self._waiting
        if last is None:
            return
        recorded_before = {name.partition("@")[0].upper() for name in last.positions}
        streams = [name for symbol in symbols if symbol in recorded_before for name in self._config.streams_of(symbol)]
        self._intake.emit_many(self._records(last, streams, self._line))

    def selectors_resolved(self) -> None:
        """The first resolution is applied: nothing is declared any more."""
        self._waiting = None

    def _line(self, kind: str, stream: str | None = None, **fields: object) -> Line:
        return encode_control(self._intake.clock(), self._conn_id, next(self._seq), kind, stream, **fields)

    def _records(self, last: LastRun, streams: list[str], line: LineMaker) -> list[Line]:
        """One ``gap`` record per stream of ``streams`` the previous run recorded (made by ``line``), the id
        trackers resumed after the last id it stored."""
        now_ns = self._intake.clock()
        how = "crash" if last.crashed else "restart"
        positions = {name: last.positions[name] for name in streams if name in last.positions}
        if last.ended_ns is not None:  # a quiet stream was recorded up to the run's end, whenever it last spoke
            quiet = [name for name in streams if self._intake.entries[name.encode()].state.quiet]
            positions.update(dict.fromkeys(quiet, StreamPosition(last.ended_ns, None)))
        lines = []
        for name, position in positions.items():
            lines.append(
                line(
                    "gap",
                    name,
                    reason=f"collector down ({how})",
                    from_time_ms=position.last_recv_ns // 1_000_000,
                    to_time_ms=now_ns // 1_000_000,
                    last_id=position.last_id,
                    segment=last.segment,
                )
            )
            sequence = self._intake.entries[name.encode()].sequence
            if sequence is not None and position.last_id is not None:
                sequence.resume_after(position.last_id, f"ids missed while the collector was down ({how})")
        if lines:
            log.warning(
                "previous run ended by %s in %s; down time declared for %d stream(s)", how, last.segment, len(lines)
            )
        return lines

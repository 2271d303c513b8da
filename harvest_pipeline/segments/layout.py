"""Segment names, where sealed files live, and the statistics and sidecar that describe a segment."""

from __future__ import annotations

import builtins
import operator
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from harvest_pipeline.markets import DEFAULT_MARKET
from harvest_pipeline.segments.records import Line

FORMAT_VERSION = 1
OPEN_SUFFIX = ".jsonl.part"
SEALED_SUFFIX = ".jsonl"
META_SUFFIX = ".meta.json"
SEALED_OBJECT_FOLDER = "segments/sealed"
"""Where sealed segments are in a bucket, under the installation's prefix."""

_line_data = operator.attrgetter("data")
_line_kind = operator.attrgetter("kind")
_line_stream = operator.attrgetter("stream")
_line_recv_ns = operator.attrgetter("recv_ns")


@dataclass
class SegmentStats:
    """What a segment holds: line counts by record kind and by stream, time range, bytes and content hash."""

    lines: int = 0
    bytes: int = 0
    first_recv_ns: int | None = None
    last_recv_ns: int | None = None
    kinds: Counter[str] = field(default_factory=Counter)
    streams: Counter[str] = field(default_factory=Counter)

    def add_lines(self, lines: Sequence[Line]) -> None:
        """Account for appended lines in bulk (C-speed counting; the writer calls this once per batch)."""
        if not lines:
            return
        self.lines += len(lines)
        self.bytes += sum(map(len, map(_line_data, lines)))
        self.kinds.update(map(_line_kind, lines))
        self.streams.update(map(_line_stream, lines))
        self.streams.pop(None, None)  # type: ignore[call-overload]
        times = list(map(_line_recv_ns, lines))
        low, high = min(times), max(times)
        if self.first_recv_ns is None or low < self.first_recv_ns:
            self.first_recv_ns = low
        if self.last_recv_ns is None or high > self.last_recv_ns:
            self.last_recv_ns = high

    def add(self, kind: str, stream: str | None, recv_ns: int | None, nbytes: int) -> None:
        """Account for one appended line."""
        self.lines += 1
        self.bytes += nbytes
        self.kinds[kind] += 1
        if stream is not None:
            self.streams[stream] += 1
        if recv_ns is not None:
            if self.first_recv_ns is None or recv_ns < self.first_recv_ns:
                self.first_recv_ns = recv_ns
            if self.last_recv_ns is None or recv_ns > self.last_recv_ns:
                self.last_recv_ns = recv_ns


@dataclass
class SegmentMeta:
    """The sidecar of a sealed segment (``<name>.jsonl.meta.json``)."""

    format_version: int
    name: str
    collector_id: str
    host: str
    pid: int
    opened_at_ns: int
    sealed_at_ns: int
    lines: int
    bytes: int
    first_recv_ns: int | None
    last_recv_ns: int | None
    kinds: dict[str, int]
    streams: dict[str, int]
    sha256: str
    recovered: bool = False
    torn_lines_cut: int = 0
    market: str = DEFAULT_MARKET
    """The Binance market the collector recorded (``harvest_pipeline.markets``): compaction reads each market's
    dialect and writes to its Parquet root. Sidecars from before markets existed are USDⓈ-M."""

    def to_json(self) -> builtins.bytes:
        """Serialise for the sidecar file."""
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: builtins.bytes) -> SegmentMeta:
        """Parse a sidecar file's content."""
        return cls(**orjson.loads(data))


def segment_name(opened_at_ns: int, collector_id: str, boot_id: str, counter: int) -> str:
    """A segment name that sorts by open time and is unique per collector, process start and counter."""
    opened = datetime.fromtimestamp(opened_at_ns / 1e9, tz=UTC)
    return f"{opened:%Y%m%dT%H%M%S}{opened.microsecond:06d}Z-{collector_id}-{boot_id}-{counter:06d}"


def segment_collector_id(name: str) -> str:
    """The collector id inside a segment name (ids have no ``-``: ``validate_collector_id``)."""
    return name.split("-")[1]


def sealed_object_name(name: str) -> str:
    """A sealed segment's object name in a bucket, relative to the installation's prefix: the local layout under
    ``segments/sealed/`` (its sidecar: this plus ``META_SUFFIX``)."""
    return f"{SEALED_OBJECT_FOLDER}/date={segment_date(name)}/{name}{SEALED_SUFFIX}"


def segment_date(name: str) -> str:
    """The UTC date folder (``YYYY-MM-DD``) a segment is sealed into, from the open time in its name."""
    return f"{name[0:4]}-{name[4:6]}-{name[6:8]}"


def sealed_path(sealed_root: Path, name: str) -> Path:
    """Where a sealed segment lives."""
    return sealed_root / f"date={segment_date(name)}" / f"{name}{SEALED_SUFFIX}"


def meta_path(segment_path: Path) -> Path:
    """The sidecar of a sealed segment."""
    return segment_path.with_name(segment_path.name + META_SUFFIX)


def validate_collector_id(collector_id: str) -> str:
    """Reject collector ids that would make ambiguous or unsafe file names."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.]{0,63}", collector_id):
        raise ValueError(f"collector id {collector_id!r} must be 1-64 letters, digits or dots, starting alphanumeric")
    return collector_id

"""The raw segment format: one module owns how records are encoded, written, sealed, recovered and read.

A *segment* is an append-only JSONL file. Every line is one record whose first four keys are always, in order::

    {"t": <receive time, ns since epoch, wall clock>, "c": "<connection id>", "n": <per-connection sequence>,
     "k": "<record kind>", ...}

Data records (``k == "frame"``) end with ``"s":"<stream>","f":<the exchange frame, byte for byte as received>``; the
frame is embedded without parsing or re-serialising it. A frame that cannot be embedded safely (not UTF-8, contains a
line break, not shaped like a JSON object) becomes a ``bad_frame`` record carrying the bytes in base64 and the reason.
REST depth snapshots are ``snapshot`` records with the response body embedded the same way (``"f"``). Everything else
(connect, disconnect, subscribed, watchdog, gap, write_loss, recovered) is a control record: later stages turn those
into the ``events`` kind.

Life of a segment: lines are written with ``pwrite`` at a tracked offset into ``open/<collector>/<name>.jsonl.part``
(a failed or torn write is simply overwritten by the retry). Sealing fsyncs and truncates the file to its last good
byte, writes the ``<name>.jsonl.meta.json`` sidecar, atomically renames the data file to
``sealed/date=YYYY-MM-DD/<name>.jsonl`` and fsyncs both directories. A sealed segment never changes again. Names start
with the UTC open time, so they sort in time order, and carry the collector id, a per-process boot id and a counter,
so they never collide across restarts or hosts.
"""

from __future__ import annotations

import base64
import hashlib
import operator
import os
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson

FORMAT_VERSION = 1
OPEN_SUFFIX = ".jsonl.part"
SEALED_SUFFIX = ".jsonl"
META_SUFFIX = ".meta.json"

KIND_FRAME = "frame"
KIND_BAD_FRAME = "bad_frame"
KIND_SNAPSHOT = "snapshot"
CONTROL_KINDS = frozenset({"connect", "disconnect", "subscribed", "watchdog", "gap", "write_loss", "recovered"})
RECORD_KINDS = frozenset({KIND_FRAME, KIND_BAD_FRAME, KIND_SNAPSHOT}) | CONTROL_KINDS

MAX_BAD_FRAME_BYTES = 64 * 1024
_SAFE_TOKEN = re.compile(rb"^[A-Za-z0-9@_.:\-]{1,200}$")
_RECORD_PREFIX = re.compile(rb'^\{"t":(\d+),"c":"([^"]*)","n":(\d+),"k":"(\w+)"(?:,"s":"([^"]*)")?')


# --------------------------------------------------------------------------------------------------------------------
# Encoding (hot path: byte formatting only)


class Line(NamedTuple):
    """One encoded record ready to append, with what the segment statistics need to know about it."""

    data: bytes
    kind: str
    stream: str | None
    recv_ns: int


def unembeddable_reason(raw: bytes) -> str | None:
    """Why ``raw`` cannot be embedded verbatim in a JSONL line, or None when it can.

    This is a shape check, not a parse: a frame that passes may still be invalid JSON, and compaction quarantines
    such a line with its number and reason. What it guarantees is that the line stays one line of valid UTF-8.
    """
    if not raw:
        return "empty frame"
    if b"\n" in raw or b"\r" in raw:
        return "frame contains a line break"
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"invalid UTF-8 at byte {exc.start}"
    stripped = raw.strip()
    if not (stripped.startswith(b"{") and stripped.endswith(b"}")):
        return "frame is not a JSON object"
    return None


_new_line = tuple.__new__  # builds a Line without NamedTuple's Python-level __new__ (hot path)
_SAFE_STREAM_CACHE: dict[str, bytes] = {}
_SAFE_STREAM_CACHE_MAX = 10_000


def _safe_stream_bytes(stream: str) -> bytes | None:
    """``stream`` encoded, or None when it is not a safe token (memoised: the hot path sees few distinct names)."""
    cached = _SAFE_STREAM_CACHE.get(stream)
    if cached is not None:
        return cached
    encoded = stream.encode()
    if not _SAFE_TOKEN.match(encoded):
        return None
    if len(_SAFE_STREAM_CACHE) < _SAFE_STREAM_CACHE_MAX:
        _SAFE_STREAM_CACHE[stream] = encoded
    return encoded


def encode_frame(recv_ns: int, conn_id: str, seq: int, stream: str, raw: bytes) -> Line:
    """A ``frame`` record embedding ``raw`` byte for byte, or a ``bad_frame`` record when it cannot be embedded."""
    # Fast path for the common case (an ASCII object without line breaks); anything else gets the full check.
    if not (raw and raw[0] == 0x7B and raw[-1] == 0x7D and raw.isascii() and 0x0A not in raw and 0x0D not in raw):
        reason = unembeddable_reason(raw)
        if reason is not None:
            return encode_bad_frame(recv_ns, conn_id, seq, stream, raw, reason)
    stream_b = _SAFE_STREAM_CACHE.get(stream) or _safe_stream_bytes(stream)
    if stream_b is None:
        return encode_bad_frame(recv_ns, conn_id, seq, stream, raw, "unsafe stream name")
    data = b'{"t":%d,"c":"%b","n":%d,"k":"frame","s":"%b","f":%b}\n' % (
        recv_ns,
        conn_id.encode(),
        seq,
        stream_b,
        raw,
    )
    return _new_line(Line, (data, KIND_FRAME, stream, recv_ns))


def encode_bad_frame(recv_ns: int, conn_id: str, seq: int, stream: str, raw: bytes, reason: str) -> Line:
    """A ``bad_frame`` record: the first 64 KiB of the frame in base64, its full length, and why it was set aside."""
    record = {
        "t": recv_ns,
        "c": conn_id,
        "n": seq,
        "k": KIND_BAD_FRAME,
        "s": stream,
        "reason": reason,
        "raw_len": len(raw),
        "raw_b64": base64.b64encode(raw[:MAX_BAD_FRAME_BYTES]).decode("ascii"),
    }
    return Line(orjson.dumps(record) + b"\n", KIND_BAD_FRAME, stream, recv_ns)


def encode_snapshot(recv_ns: int, conn_id: str, seq: int, symbol: str, body: bytes, **fields: Any) -> Line:
    """A ``snapshot`` record embedding a REST depth response body verbatim (or a bad_frame if it cannot be)."""
    stream = f"{symbol.lower()}@depthSnapshot"
    reason = unembeddable_reason(body)
    if reason is not None:
        return encode_bad_frame(recv_ns, conn_id, seq, stream, body, f"depth snapshot: {reason}")
    extra = orjson.dumps({"symbol": symbol, **fields})[1:-1]
    data = b'{"t":%d,"c":"%b","n":%d,"k":"snapshot","s":"%b",%b,"f":%b}\n' % (
        recv_ns,
        conn_id.encode(),
        seq,
        stream.encode(),
        extra,
        body.strip(),
    )
    return Line(data, KIND_SNAPSHOT, stream, recv_ns)


def encode_control(recv_ns: int, conn_id: str, seq: int, kind: str, stream: str | None = None, **fields: Any) -> Line:
    """A control record (connect, disconnect, gap, ...) with free-form JSON fields after the common prefix."""
    if kind not in CONTROL_KINDS:
        raise ValueError(f"unknown control record kind {kind!r}; expected one of {sorted(CONTROL_KINDS)}")
    record: dict[str, Any] = {"t": recv_ns, "c": conn_id, "n": seq, "k": kind}
    if stream is not None:
        record["s"] = stream
    record.update(fields)
    return Line(orjson.dumps(record) + b"\n", kind, stream, recv_ns)


# --------------------------------------------------------------------------------------------------------------------
# Decoding (compaction, tests, replay)


class BadLine(NamedTuple):
    """A line that is not a valid record, with what could be recovered of its prefix."""

    line_no: int
    reason: str
    raw: bytes
    recv_ns: int | None
    conn_id: str | None
    stream: str | None


def parse_record(line: bytes) -> dict[str, Any]:
    """Decode one record line; raises ``ValueError`` with the reason when it is not a valid record."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError("record is not a JSON object")
    for key, kind in (("t", int), ("c", str), ("n", int), ("k", str)):
        if not isinstance(record.get(key), kind):
            raise ValueError(f"record field {key!r} missing or not {kind.__name__}")
    if record["k"] not in RECORD_KINDS:
        raise ValueError(f"unknown record kind {record['k']!r}")
    return record


def bad_line(line_no: int, line: bytes, reason: str) -> BadLine:
    """Describe an unparseable line, recovering receive time, connection and stream from its prefix if possible."""
    match = _RECORD_PREFIX.match(line)
    if match is None:
        return BadLine(line_no, reason, line, None, None, None)
    stream = match.group(5).decode("utf-8", "replace") if match.group(5) is not None else None
    return BadLine(line_no, reason, line, int(match.group(1)), match.group(2).decode("utf-8", "replace"), stream)


def iter_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_no, line)`` for every line of a segment, 1-based, without the trailing newline."""
    with open(path, "rb") as handle:
        for line_no, line in enumerate(handle, start=1):
            yield line_no, line.rstrip(b"\n")


def iter_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
    """Yield ``(line_no, record)`` for every line; lines that do not decode come back as ``BadLine``."""
    for line_no, line in iter_lines(path):
        try:
            yield line_no, parse_record(line)
        except ValueError as exc:
            yield line_no, bad_line(line_no, line, str(exc))


# --------------------------------------------------------------------------------------------------------------------
# File-system layer (injectable, so tests can make the disk fail even when running as root)


class FileSystem:
    """The handful of file operations a segment needs. Subclass it to inject faults."""

    def open_for_write(self, path: Path) -> int:
        """Open (creating) ``path`` for positional writes and return the descriptor."""
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        """Write ``data`` at ``offset``; returns the number of bytes written."""
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        """Flush a file's data and metadata to stable storage."""
        os.fsync(fd)

    def truncate(self, fd: int, size: int) -> None:
        """Cut a file to ``size`` bytes (drops a torn tail)."""
        os.ftruncate(fd, size)

    def close(self, fd: int) -> None:
        """Close a descriptor."""
        os.close(fd)

    def makedirs(self, path: Path) -> None:
        """Create a directory and its parents if missing."""
        path.mkdir(parents=True, exist_ok=True)

    def replace(self, src: Path, dst: Path) -> None:
        """Atomically rename ``src`` to ``dst`` (same file system)."""
        os.replace(src, dst)

    def write_file(self, path: Path, data: bytes) -> None:
        """Write a small file durably: temp file, fsync, atomic rename."""
        tmp = path.with_name(path.name + ".tmp")
        fd = self.open_for_write(tmp)
        try:
            self.truncate(fd, 0)
            written = 0
            while written < len(data):
                written += self.pwrite(fd, data[written:], written)
            self.fsync(fd)
        finally:
            self.close(fd)
        self.replace(tmp, path)

    def fsync_dir(self, path: Path) -> None:
        """Persist a directory's entries (after a create or rename inside it)."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def unlink(self, path: Path) -> None:
        """Remove a file if it exists."""
        path.unlink(missing_ok=True)


LOCAL_FS = FileSystem()


# --------------------------------------------------------------------------------------------------------------------
# Statistics and the sidecar


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

    def to_json(self) -> bytes:
        """Serialise for the sidecar file."""
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes) -> SegmentMeta:
        """Parse a sidecar file's content."""
        return cls(**orjson.loads(data))


def segment_name(opened_at_ns: int, collector_id: str, boot_id: str, counter: int) -> str:
    """A segment name that sorts by open time and is unique per collector, process start and counter."""
    opened = datetime.fromtimestamp(opened_at_ns / 1e9, tz=UTC)
    return f"{opened:%Y%m%dT%H%M%S}{opened.microsecond:06d}Z-{collector_id}-{boot_id}-{counter:06d}"


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


# --------------------------------------------------------------------------------------------------------------------
# Writing


class OpenSegment:
    """One segment being written. ``append`` either writes the whole batch or raises and changes nothing."""

    def __init__(self, open_dir: Path, name: str, collector_id: str, opened_at_ns: int, fs: FileSystem = LOCAL_FS):
        self.name = name
        self.collector_id = collector_id
        self.opened_at_ns = opened_at_ns
        self.path = open_dir / f"{name}{OPEN_SUFFIX}"
        self.stats = SegmentStats()
        self._fs = fs
        self._fd: int | None = None
        self._hash = hashlib.sha256()

    @property
    def size(self) -> int:
        """Bytes durably accepted so far (the offset of the next write)."""
        return self.stats.bytes

    def append(self, lines: Sequence[Line]) -> None:
        """Write ``lines`` at the end of the segment. On ``OSError`` nothing is accounted and a retry is safe."""
        if not lines:
            return
        data = b"".join(line.data for line in lines)
        if self._fd is None:
            self._fd = self._fs.open_for_write(self.path)
        offset, written = self.stats.bytes, 0
        while written < len(data):
            written += self._fs.pwrite(self._fd, data[written:], offset + written)
        self._hash.update(data)
        self.stats.add_lines(lines)

    def sync(self) -> None:
        """fsync what was appended so far (bounds what a power loss can take; a process crash loses nothing)."""
        if self._fd is not None:
            self._fs.fsync(self._fd)

    def seal(self, sealed_root: Path, sealed_at_ns: int | None = None) -> SegmentMeta | None:
        """Make the segment durable and immutable. Idempotent: after an ``OSError`` call it again to resume.

        Returns the sidecar metadata, or None when the segment never received a line (nothing is sealed).
        """
        if self.stats.lines == 0:
            self._close()
            self._fs.unlink(self.path)
            return None
        if self._fd is not None:
            self._fs.truncate(self._fd, self.stats.bytes)
            self._fs.fsync(self._fd)
            self._close()
        meta = self._meta(sealed_at_ns or time.time_ns())
        finish_seal(self.path, sealed_root, meta, self._fs)
        return meta

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._fs.close(fd)

    def _meta(self, sealed_at_ns: int) -> SegmentMeta:
        return SegmentMeta(
            format_version=FORMAT_VERSION,
            name=self.name,
            collector_id=self.collector_id,
            host=os.uname().nodename,
            pid=os.getpid(),
            opened_at_ns=self.opened_at_ns,
            sealed_at_ns=sealed_at_ns,
            lines=self.stats.lines,
            bytes=self.stats.bytes,
            first_recv_ns=self.stats.first_recv_ns,
            last_recv_ns=self.stats.last_recv_ns,
            kinds=dict(self.stats.kinds),
            streams=dict(self.stats.streams),
            sha256=self._hash.hexdigest(),
        )


def finish_seal(open_path: Path, sealed_root: Path, meta: SegmentMeta, fs: FileSystem = LOCAL_FS) -> Path:
    """Sidecar first, then the atomic rename of the data file, then directory fsyncs. Safe to repeat."""
    target = sealed_path(sealed_root, meta.name)
    fs.makedirs(target.parent)
    if open_path.exists() or not target.exists():
        fs.write_file(meta_path(target), meta.to_json())
        fs.replace(open_path, target)
    fs.fsync_dir(target.parent)
    fs.fsync_dir(open_path.parent)
    return target


class SegmentNamer:
    """Hands out unique, time-ordered segment names for one collector process."""

    def __init__(self, collector_id: str, boot_id: str | None = None):
        self.collector_id = validate_collector_id(collector_id)
        self.boot_id = boot_id or secrets.token_hex(4)
        self._counter = 0

    def next_name(self, opened_at_ns: int) -> str:
        """The name for a segment opened at ``opened_at_ns``."""
        self._counter += 1
        return segment_name(opened_at_ns, self.collector_id, self.boot_id, self._counter)


# --------------------------------------------------------------------------------------------------------------------
# Crash recovery


def scan_stats(data: bytes) -> SegmentStats:
    """Recompute statistics of complete lines from their common prefix (used after a crash)."""
    stats = SegmentStats()
    for line in data.splitlines(keepends=True):
        match = _RECORD_PREFIX.match(line)
        if match is None:
            stats.add("unparseable", None, None, len(line))
            continue
        stream = match.group(5).decode("utf-8", "replace") if match.group(5) is not None else None
        stats.add(match.group(4).decode(), stream, int(match.group(1)), len(line))
    return stats


def recover_open_segment(
    path: Path, sealed_root: Path, collector_id: str, fs: FileSystem = LOCAL_FS
) -> SegmentMeta | None:
    """Seal a segment left open by a crash: cut a torn last line (counted), recompute stats, seal the rest.

    Returns the sidecar metadata, or None if nothing complete was left (the file is removed).
    """
    data = path.read_bytes()
    good = data.rfind(b"\n") + 1
    torn = 1 if good < len(data) else 0
    name = path.name.removesuffix(OPEN_SUFFIX)
    if good == 0:
        fs.unlink(path)
        return None
    fd = fs.open_for_write(path)
    try:
        fs.truncate(fd, good)
        fs.fsync(fd)
    finally:
        fs.close(fd)
    body = data[:good]
    stats = scan_stats(body)
    opened_at_ns = int(datetime.strptime(name[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp()) * 10**9
    opened_at_ns += int(name[15:21]) * 1000
    meta = SegmentMeta(
        format_version=FORMAT_VERSION,
        name=name,
        collector_id=collector_id,
        host=os.uname().nodename,
        pid=os.getpid(),
        opened_at_ns=opened_at_ns,
        sealed_at_ns=time.time_ns(),
        lines=stats.lines,
        bytes=stats.bytes,
        first_recv_ns=stats.first_recv_ns,
        last_recv_ns=stats.last_recv_ns,
        kinds=dict(stats.kinds),
        streams=dict(stats.streams),
        sha256=hashlib.sha256(body).hexdigest(),
        recovered=True,
        torn_lines_cut=torn,
    )
    finish_seal(path, sealed_root, meta, fs)
    return meta


def recover_open_segments(
    open_dir: Path, sealed_root: Path, collector_id: str, fs: FileSystem = LOCAL_FS
) -> list[SegmentMeta]:
    """Recover every segment a previous run of this collector left open, oldest first."""
    if not open_dir.exists():
        return []
    recovered = []
    for path in sorted(open_dir.glob(f"*{OPEN_SUFFIX}")):
        meta = recover_open_segment(path, sealed_root, collector_id, fs)
        if meta is not None:
            recovered.append(meta)
    return recovered


# --------------------------------------------------------------------------------------------------------------------
# Discovery


@dataclass(frozen=True)
class SealedSegment:
    """A sealed segment on disk, as discovered by a sensor."""

    name: str
    path: Path

    @property
    def meta_path(self) -> Path:
        """Its sidecar."""
        return meta_path(self.path)

    def load_meta(self) -> SegmentMeta:
        """Read its sidecar."""
        return SegmentMeta.from_json(self.meta_path.read_bytes())


def list_sealed_segments(sealed_root: Path, since_date: str | None = None) -> list[SealedSegment]:
    """Sealed segments (data file and sidecar both present) sorted by name.

    ``since_date`` (``YYYY-MM-DD``) skips older date folders without listing them, so a sensor stays fast with a long
    history on disk. Names are not a cursor: a segment recovered after a crash can be sealed after younger ones.
    """
    if not sealed_root.exists():
        return []
    floor = f"date={since_date}" if since_date else ""
    found: list[SealedSegment] = []
    for day in os.scandir(sealed_root):
        if not day.is_dir() or not day.name.startswith("date=") or day.name < floor:
            continue
        names = {entry.name for entry in os.scandir(day.path)}
        for entry_name in names:
            if entry_name.endswith(SEALED_SUFFIX) and f"{entry_name}{META_SUFFIX}" in names:
                found.append(SealedSegment(entry_name.removesuffix(SEALED_SUFFIX), Path(day.path) / entry_name))
    found.sort(key=lambda segment: segment.name)
    return found


def find_sealed_segment(sealed_root: Path, name: str) -> SealedSegment:
    """Locate a sealed segment by name; raises ``FileNotFoundError`` naming the expected path."""
    path = sealed_path(sealed_root, name)
    if not path.exists() or not meta_path(path).exists():
        raise FileNotFoundError(f"sealed segment {name} not found at {path} (data file and .meta.json sidecar needed)")
    return SealedSegment(name, path)

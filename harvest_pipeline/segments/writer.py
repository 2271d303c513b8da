"""Writing and sealing a segment: positional appends that a retry can repeat, then an atomic, durable seal."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import os
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from harvest_pipeline.markets import DEFAULT_MARKET
from harvest_pipeline.segments.filesystem import LOCAL_FS, FileSystem
from harvest_pipeline.segments.layout import (
    FORMAT_VERSION,
    OPEN_SUFFIX,
    SegmentMeta,
    SegmentStats,
    meta_path,
    sealed_path,
    segment_name,
    validate_collector_id,
)
from harvest_pipeline.segments.records import RECORD_PREFIX, Line


class PartialAppend(OSError):
    """An append failed after ``lines_written`` whole lines reached the file (they are kept)."""

    def __init__(self, cause: OSError, lines_written: int):
        super().__init__(cause.errno, cause.strerror)
        self.lines_written = lines_written


class OpenSegment:
    """One segment being written. ``append`` either writes the whole batch or raises and changes nothing."""

    def __init__(
        self,
        open_dir: Path,
        name: str,
        collector_id: str,
        opened_at_ns: int,
        fs: FileSystem = LOCAL_FS,
        market: str = DEFAULT_MARKET,
    ):
        self.name = name
        self.collector_id = collector_id
        self.market = market
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
        """Write ``lines`` at the end of the segment.

        On ``OSError`` the lines that reached the file whole are kept and accounted (``PartialAppend.lines_written``
        says how many, possibly 0); the rest may be retried: a partly written line is overwritten by the next write
        and cut at seal, so whatever space a full disk has left is used at once.
        """
        if not lines:
            return
        data = b"".join(line.data for line in lines)
        offset, written = self.stats.bytes, 0
        try:
            if self._fd is None:
                self._fd = self._fs.open_for_write(self.path)
            while written < len(data):
                written += self._fs.pwrite(self._fd, data[written:], offset + written)
        except OSError as exc:
            whole = bisect.bisect_right(list(itertools.accumulate(len(line.data) for line in lines)), written)
            kept = lines[:whole]
            self._hash.update(data[: sum(len(line.data) for line in kept)])
            self.stats.add_lines(kept)
            raise PartialAppend(exc, whole) from exc
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
            market=self.market,
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


def scan_stats(data: bytes) -> SegmentStats:
    """Recompute statistics of complete lines from their common prefix (used after a crash)."""
    stats = SegmentStats()
    for line in data.splitlines(keepends=True):
        match = RECORD_PREFIX.match(line)
        if match is None:
            stats.add("unparseable", None, None, len(line))
            continue
        stream = match.group(5).decode("utf-8", "replace") if match.group(5) is not None else None
        stats.add(match.group(4).decode(), stream, int(match.group(1)), len(line))
    return stats


class Recovered(NamedTuple):
    """What start-up recovery did with one segment a crash left open."""

    name: str
    meta: SegmentMeta | None
    """The sealed segment's sidecar, or None when no complete line was left (the file was removed)."""
    torn_lines_cut: int


def recover_open_segment(
    path: Path, sealed_root: Path, collector_id: str, fs: FileSystem = LOCAL_FS, market: str = DEFAULT_MARKET
) -> Recovered:
    """Seal a segment left open by a crash: cut a torn last line (counted), recompute stats, seal the rest.

    ``market`` is the recording collector's: each collector recovers only its own open directory.

    Safe to repeat after any failure: the sidecar, with the count of torn lines, is written before the cut, and a
    repeat that finds the cut already made takes the count from that sidecar.
    """
    name = path.name.removesuffix(OPEN_SUFFIX)
    data = path.read_bytes()
    good = data.rfind(b"\n") + 1
    torn = 1 if good < len(data) else 0
    if good == 0:
        fs.unlink(path)
        return Recovered(name, None, torn)
    body = data[:good]
    sha256 = hashlib.sha256(body).hexdigest()
    target = sealed_path(sealed_root, name)
    torn = max(torn, _torn_lines_already_cut(meta_path(target), good, sha256))
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
        sha256=sha256,
        recovered=True,
        torn_lines_cut=torn,
        market=market,
    )
    if good < len(data):
        fs.makedirs(target.parent)
        fs.write_file(meta_path(target), meta.to_json())
        fd = fs.open_for_write(path)
        try:
            fs.truncate(fd, good)
            fs.fsync(fd)
        finally:
            fs.close(fd)
    finish_seal(path, sealed_root, meta, fs)
    return Recovered(name, meta, torn)


def _torn_lines_already_cut(sidecar: Path, size: int, sha256: str) -> int:
    """The torn-line count an earlier, interrupted recovery of the same content recorded, else 0."""
    try:
        earlier = SegmentMeta.from_json(sidecar.read_bytes())
    except (OSError, ValueError, TypeError):
        return 0
    return earlier.torn_lines_cut if earlier.bytes == size and earlier.sha256 == sha256 else 0


def recover_open_segments(
    open_dir: Path, sealed_root: Path, collector_id: str, fs: FileSystem = LOCAL_FS, market: str = DEFAULT_MARKET
) -> list[Recovered]:
    """Recover every segment a previous run of this collector left open, oldest first."""
    if not open_dir.exists():
        return []
    paths = sorted(open_dir.glob(f"*{OPEN_SUFFIX}"))
    return [recover_open_segment(path, sealed_root, collector_id, fs, market) for path in paths]

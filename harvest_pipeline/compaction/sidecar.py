"""Reading a sealed segment and proving it is the one its sidecar describes (size, line count, sha256).

The collector's sidecar is written before the seal's rename and records the sha256 of every byte of the segment. A
segment that disagrees with it (a flipped bit, a truncation, a foreign file) is corrupt: compaction fails it before
writing anything, so corrupt bytes never pass reconciliation as good rows. Whole-segment problems are permanent
(``SegmentUnreadable``): retrying cannot make a missing file appear or a flipped bit right itself. Any other
``OSError`` (EIO, ENOSPC, ...) propagates and is worth retrying.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from harvest_pipeline import segments
from harvest_pipeline.compaction import rules
from harvest_pipeline.markets import Market, market

Data = TypeVar("Data", bytes, bytes | memoryview)
_PERMANENT_READ_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class SegmentUnreadable(Exception):
    """A permanent failure: the segment or its sidecar is missing, unreadable or corrupt; retrying cannot help."""


def load_meta(sealed: segments.SealedSegment) -> segments.SegmentMeta:
    """The segment's sidecar, checked for the fields compaction relies on."""
    data = _read(sealed, sealed.meta_path, "sidecar", Path.read_bytes)
    try:
        meta = segments.SegmentMeta.from_json(data)
    except (ValueError, TypeError) as exc:  # not JSON, not an object, missing or unknown fields
        raise SegmentUnreadable(f"segment {sealed.name}: sidecar {sealed.meta_path} is corrupt ({exc})") from exc
    problem = _meta_problem(sealed, meta)
    if problem is not None:
        raise SegmentUnreadable(f"segment {sealed.name}: sidecar {sealed.meta_path} is corrupt ({problem})")
    return meta


def _meta_problem(sealed: segments.SealedSegment, meta: segments.SegmentMeta) -> str | None:
    if meta.name != sealed.name:
        return f"it describes segment {meta.name!r}"
    if not isinstance(meta.sha256, str) or not _SHA256.fullmatch(meta.sha256):
        return "sha256 is not 64 lower-case hex digits"
    for key in ("lines", "bytes"):
        value = getattr(meta, key)
        if type(value) is not int or value < 0:
            return f"{key} is not a count"
    if type(meta.opened_at_ns) is not int or not rules.plausible_recv_ns(meta.opened_at_ns):
        return "opened_at_ns is not a time after 2017-01-01 in int64 ns"
    if not isinstance(meta.kinds, dict):
        return "kinds is not an object"
    return None


def market_of(sealed: segments.SealedSegment, meta: segments.SegmentMeta) -> Market:
    """The market the sidecar names; an unknown one is a permanent problem (this version cannot read the segment)."""
    try:
        return market(meta.market)
    except (ValueError, TypeError) as exc:
        raise SegmentUnreadable(f"segment {sealed.name}: sidecar {sealed.meta_path} names {exc}") from exc


def read_data(sealed: segments.SealedSegment) -> bytes | memoryview:
    """Every byte of the segment's data file (a large one read in two threads, into memory no one zeroes first)."""
    return _read(sealed, sealed.path, "data file", _read_parallel)


_PARALLEL_READ_BYTES = 16 * 1024 * 1024
"""From this size a data file is read in two halves at once: copying from the page cache is most of a read, and
two cores copy it in about half the time."""


def _read_parallel(path: Path) -> bytes | memoryview:
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < _PARALLEL_READ_BYTES:
            return handle.read()
        view = np.empty(size, dtype=np.uint8).data
        middle = size // 2

        def read_range(start: int, end: int) -> int:
            done = 0
            while start + done < end:
                got = os.preadv(handle.fileno(), [view[start + done : end]], start + done)
                if got == 0:
                    break
                done += got
            return done

        with ThreadPoolExecutor(max_workers=1) as other:
            second = other.submit(read_range, middle, size)
            complete = read_range(0, middle) == middle and second.result() == size - middle
        handle.seek(size)
        if not complete or handle.read(1):  # the file changed size meanwhile: read it as it is now
            handle.seek(0)
            return handle.read()
        return view


def _read(sealed: segments.SealedSegment, path: Path, what: str, reader: Callable[[Path], Data]) -> Data:
    """``reader(path)``; a permanent error (missing, a folder, no permission) as ``SegmentUnreadable``."""
    try:
        return reader(path)
    except _PERMANENT_READ_ERRORS as exc:
        raise SegmentUnreadable(f"segment {sealed.name}: cannot read its {what} {path} ({exc})") from exc


def verify(sealed: segments.SealedSegment, meta: segments.SegmentMeta, size: int, lines: int, sha256: str) -> None:
    """Raise ``SegmentUnreadable`` naming the segment when its bytes are not those the sidecar describes."""
    for what, got, expected in (
        ("size", f"{size} bytes", f"{meta.bytes} bytes"),
        ("line count", f"{lines} lines", f"{meta.lines} lines"),
        ("sha256", sha256, meta.sha256),
    ):
        if got != expected:
            raise SegmentUnreadable(
                f"segment {sealed.name} is corrupt: {what} {got} != sidecar {expected} ({sealed.path}; "
                "the file changed after it was sealed: restore it from a copy or remove it and its sidecar)"
            )

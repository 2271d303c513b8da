"""Where the previous run of this collector stopped, per stream, so a restart can declare the window it missed.

Read-only: it reads the tail of the newest segment this collector id wrote (a segment a crash left open, else the
newest sealed one) before that segment is recovered, and finds per stream the receive time of the last frame and
its exchange id (aggTrade ``a``, diff-depth ``u``). The collector then writes one ``gap`` record per stream for the
time it was down and resumes its id trackers there, so the ids sent meanwhile surface as a ``gap`` with the first
frame after the restart. A quiet stream (liquidations) may have sent nothing for hours while it was recorded, so its
down time starts at the previous run's last record (``LastRun.ended_ns``), not at its last frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harvest_pipeline.collector.sequencing import MAX_ID, AggTradeSequence, DepthSequence, extract_int, sequence_for
from harvest_pipeline.segments import OPEN_SUFFIX, RECORD_PREFIX, SEALED_SUFFIX

log = logging.getLogger(__name__)

TAIL_BYTES = 64 * 1024 * 1024
"""How much of a segment's end is read (the default segment bound)."""
LAST_RECORD_BYTES = 64 * 1024
"""How much of the newest segment's end is read to find its last record."""
SEALED_DATE_FOLDERS = 3
"""Newest date folders searched for this collector's last sealed segment."""


ID_KEYS: dict[type, bytes] = {AggTradeSequence: b'"a":', DepthSequence: b'"u":'}
IdKeyOf = Callable[[str], bytes | None]


def id_key_of(stream: str) -> bytes | None:
    """The key of a stream's exchange id in its frames (aggTrade ``a``, diff-depth ``u``), None if it has none."""
    return ID_KEYS.get(type(sequence_for(stream)))


@dataclass(frozen=True)
class StreamPosition:
    """The last frame of one stream the previous run wrote."""

    last_recv_ns: int
    last_id: int | None


@dataclass(frozen=True)
class LastRun:
    """How the previous run of this collector ended and where each stream stood."""

    segment: str
    crashed: bool
    positions: dict[str, StreamPosition]
    ended_ns: int | None
    """Receive time of the last record the previous run wrote (None if none could be read)."""


def find_last_run(
    open_dir: Path,
    sealed_root: Path,
    collector_id: str,
    id_keys: Mapping[str, bytes | None],
    others: IdKeyOf | None = None,
) -> LastRun | None:
    """The previous run's end for the streams of ``id_keys`` (stream -> id key such as ``b'"a":'``, or None), and
    with ``others`` (stream -> its id key) for every other stream found too (its symbols not known yet)."""
    open_parts = sorted(open_dir.glob(f"*{OPEN_SUFFIX}"), reverse=True) if open_dir.exists() else []
    candidates = open_parts or _newest_sealed(sealed_root, collector_id)
    if not candidates:
        return None
    positions: dict[str, StreamPosition] = {}
    for path in candidates[:2]:
        for stream, position in tail_positions(path, id_keys, others).items():
            positions.setdefault(stream, position)
        if others is None and len(positions) == len(id_keys):
            break
    name = candidates[0].name.removesuffix(OPEN_SUFFIX).removesuffix(SEALED_SUFFIX)
    return LastRun(name, bool(open_parts), positions, last_record_ns(candidates[0]))


def _newest_sealed(sealed_root: Path, collector_id: str) -> list[Path]:
    if not sealed_root.exists():
        return []
    folders = sorted((p for p in sealed_root.glob("date=*") if p.is_dir()), reverse=True)[:SEALED_DATE_FOLDERS]
    found = [
        path
        for folder in folders
        for path in folder.glob(f"*-{collector_id}-*{SEALED_SUFFIX}")
        if path.name.split("-")[1] == collector_id
    ]
    return sorted(found, key=lambda path: path.name, reverse=True)


def tail_positions(
    path: Path, id_keys: Mapping[str, bytes | None], others: IdKeyOf | None = None
) -> dict[str, StreamPosition]:
    """Per stream of ``id_keys`` (and with ``others``, of any stream), the last frame record in ``path`` (reading at
    most ``TAIL_BYTES`` of its end)."""
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - TAIL_BYTES))
        data = handle.read()
    wanted = {stream.encode(): stream for stream in id_keys}
    found: dict[str, StreamPosition] = {}
    for line in reversed(data.split(b"\n")):
        match = RECORD_PREFIX.match(line)
        if match is None or match.group(4) != b"frame" or match.group(5) is None:
            continue
        stream = wanted.get(match.group(5))
        if stream is None and others is not None:
            stream = match.group(5).decode("utf-8", "replace")
        if stream is None or stream in found:
            continue
        key = id_keys[stream] if stream in id_keys else others(stream) if others is not None else None
        found[stream] = StreamPosition(int(match.group(1)), None if key is None else _plausible_id(line, key))
        if others is None and len(found) == len(wanted):
            break
    return found


def last_record_ns(path: Path) -> int | None:
    """The receive time of the last record in ``path`` (a torn last line still shows its receive time)."""
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - LAST_RECORD_BYTES))
        data = handle.read()
    for line in reversed(data.split(b"\n")):
        match = RECORD_PREFIX.match(line)
        if match is not None:
            return int(match.group(1))
    return None


def _plausible_id(line: bytes, key: bytes) -> int | None:
    """The id after ``key`` in ``line`` if it is an integer in ``0..MAX_ID`` (the trackers' own range)."""
    value = extract_int(line, key)
    return value if value is not None and 0 <= value <= MAX_ID else None

"""Read a sealed segment into an Arrow table of ``(line, raw)`` with exact 1-based line numbers.

The fast path splits the bytes on ``\\n`` inside Arrow (``split_pattern``, one C pass, no Python object per line)
and validates UTF-8 in the cast to string. A segment with invalid UTF-8 goes down the slow path, which splits in
Python and marks undecodable lines so they are quarantined rather than lost. Both split on ``\\n`` only: a
carriage return stays inside its line, as JSON whitespace.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class SegmentLines(NamedTuple):
    """The lines of one segment: ``table`` has ``line`` (int64) and ``raw`` (text, null when not UTF-8)."""

    table: pa.Table
    invalid_utf8: dict[int, tuple[str, str]]
    """Line number -> (reason, text decoded with replacement characters) for lines whose ``raw`` is null because
    they are not valid UTF-8; the text is for the quarantine file only, never parsed."""


def read_segment_lines(path: Path) -> SegmentLines:
    """All lines of ``path`` (the final newline does not start an extra line)."""
    return split_segment_lines(path.read_bytes())


def split_segment_lines(data: bytes) -> SegmentLines:
    """All lines of a segment's bytes (the final newline does not start an extra line)."""
    if not data:
        return SegmentLines(_table([], []), {})
    try:
        return SegmentLines(_read_fast(data), {})
    except pa.ArrowInvalid:
        return _read_slow(data)


def _read_fast(data: bytes) -> pa.Table:
    parts = pc.split_pattern(pa.array([data], pa.large_binary()), b"\n").values
    if data.endswith(b"\n"):
        parts = parts.slice(0, len(parts) - 1)
    raw = parts.cast(pa.large_string())
    return pa.table({"line": pa.array(np.arange(1, len(raw) + 1, dtype=np.int64)), "raw": raw})


def _read_slow(data: bytes) -> SegmentLines:
    chunks = data.split(b"\n")
    if data.endswith(b"\n"):
        chunks.pop()
    texts: list[str | None] = []
    invalid: dict[int, tuple[str, str]] = {}
    for line_no, chunk in enumerate(chunks, start=1):
        try:
            texts.append(chunk.decode("utf-8"))
        except UnicodeDecodeError as exc:
            texts.append(None)
            invalid[line_no] = (f"invalid UTF-8 at byte {exc.start}", chunk.decode("utf-8", "replace"))
    return SegmentLines(_table(list(range(1, len(chunks) + 1)), texts), invalid)


def _table(line_numbers: list[int], texts: list[str | None]) -> pa.Table:
    return pa.table({"line": pa.array(line_numbers, pa.int64()), "raw": pa.array(texts, pa.string())})

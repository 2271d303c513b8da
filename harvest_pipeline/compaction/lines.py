"""Read a sealed segment into an Arrow table of ``(line, raw)`` with exact 1-based line numbers.

The fast path hands the bytes to Arrow's multithreaded CSV reader as a one-column file (no quoting, no delimiter that
valid JSON can contain unescaped). Anything that could make that reader disagree with a plain split on ``\\n`` -- a
carriage return, a control byte used as delimiter, invalid UTF-8 -- sends the segment down the slow path, which splits
in Python and marks undecodable lines so they are quarantined rather than lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.csv as pa_csv

_DELIMITER = "\x01"
_BLOCK_SIZE = 16 << 20


class SegmentLines(NamedTuple):
    """The lines of one segment: ``table`` has ``line`` (int64) and ``raw`` (string, null when not UTF-8)."""

    table: pa.Table
    invalid_utf8: dict[int, tuple[str, str]]
    """Line number -> (reason, text decoded with replacement characters) for lines whose ``raw`` is null because
    they are not valid UTF-8; the text is for the quarantine file only, never parsed."""


def read_segment_lines(path: Path) -> SegmentLines:
    """All lines of ``path`` (the final newline does not start an extra line)."""
    data = path.read_bytes()
    if not data:
        return SegmentLines(_table([], []), {})
    if b"\r" not in data and _DELIMITER.encode() not in data:
        try:
            return SegmentLines(_read_fast(data), {})
        except (pa.ArrowInvalid, UnicodeDecodeError):
            pass
    return _read_slow(data)


def _read_fast(data: bytes) -> pa.Table:
    table = pa_csv.read_csv(
        pa.BufferReader(data),
        read_options=pa_csv.ReadOptions(column_names=["raw"], block_size=_BLOCK_SIZE),
        parse_options=pa_csv.ParseOptions(
            delimiter=_DELIMITER, quote_char=False, escape_char=False, ignore_empty_lines=False
        ),
        convert_options=pa_csv.ConvertOptions(
            column_types={"raw": pa.string()}, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    expected = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if table.num_rows != expected:
        raise pa.ArrowInvalid(f"CSV reader saw {table.num_rows} lines, expected {expected}")
    raw = table.column("raw").combine_chunks()
    return pa.table({"line": pa.array(range(1, table.num_rows + 1), pa.int64()), "raw": raw})


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

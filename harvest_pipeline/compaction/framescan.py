"""The optional compiled scanner of frame lines (``_framescan.c``), as Arrow columns.

Reading a frame with DuckDB JSON paths costs most of a compaction: parsing every line, and for a depth diff
serializing its levels and parsing them again. The scanner reads a line whose bytes are the exchange's plain layout
(no whitespace, no escapes, integers of at most 19 digits, plain decimals) in one pass and gives exactly what the
SQL would read: the texts ``json_extract_string`` returns, the exact integers and decimals ``exact_int`` and
``exact_dec`` would make of them, and a depth diff's levels as the exact decimal lists ``json_levels`` makes. Every
other line is left to the SQL (the C file lists the rules), which also still runs every check on what the scanner
read. It also makes the fast path's guess of each line's kind (``classify``).

``pip install -e .`` compiles it (``pyproject.toml``); without a C compiler ``AVAILABLE`` is false and compaction
writes the same files through DuckDB alone, only slower. ``tests/compaction/test_fast_path_identical.py`` compares
the files of every road byte for byte.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa

from harvest_pipeline import schema
from harvest_pipeline.compaction.kinds import COMBINED_PATHS

try:
    from harvest_pipeline.compaction import _framescan  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler
    _framescan = None

AVAILABLE = _framescan is not None
ENABLED = True
"""Whether the scanner is used when available; tests switch it off to compare every output."""

LEVEL_COLUMNS: tuple[str, str] = ("levels_b", "levels_a")
"""Columns of the scanned depth levels (``b`` then ``a``), as ``LEVEL_TYPE`` lists of exact decimals."""
_SCALED = pa.decimal64(schema.PRICE.precision, schema.PRICE.scale)
"""The scanner's decimals: int64 scaled by 1e8, which DuckDB reads as its ``DECIMAL(18, 8)`` (also an int64)."""
LEVEL_TYPE = pa.list_(pa.field("l", pa.struct([pa.field("price", schema.PRICE), pa.field("qty", schema.PRICE)])))
"""The levels' type as DuckDB's reading of them gives it, so that both concatenate."""
_THREADS = min(2, os.cpu_count() or 1)
_MIN_LINES_PER_THREAD = 50_000
"""Below this many lines per thread a second thread costs more than it saves."""


T = TypeVar("T")

TYPED_PREFIX = {"int": "i", "dec": "d"}
"""A slot ``vN`` the scanner converts is the column ``iN`` (int64) or ``dN`` (decimal(18, 8))."""


def slot_of_key(path: str) -> str:
    """The slot column (``kinds.slot``) of a combined-stream JSON path."""
    return f"v{COMBINED_PATHS.index(path) + 1}"


def typed_name(slot: str, convert: str) -> str:
    """The column of slot ``vN`` converted by ``convert`` (``int`` or ``dec``)."""
    return TYPED_PREFIX[convert] + slot[1:]


@dataclass(frozen=True)
class Scanned:
    """What the scanner read of some lines: which it ``accepted``, and for those (in order) a table of ``line``,
    ``combined``, every slot the scanner knows and, with levels, ``LEVEL_COLUMNS``."""

    accepted: np.ndarray
    table: pa.Table


def usable() -> bool:
    """Whether compaction uses the scanner."""
    return AVAILABLE and ENABLED


def _single(raw: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``raw`` as one array (``combine_chunks`` copies even a single chunk)."""
    if isinstance(raw, pa.ChunkedArray):
        return raw.chunk(0) if raw.num_chunks == 1 else raw.combine_chunks()
    return raw


def _offsets(raw: pa.Array) -> np.ndarray:
    return np.frombuffer(raw.buffers()[1], dtype=np.int64)[raw.offset : raw.offset + len(raw) + 1]


def _in_threads(count: int, work: Callable[[int, int], T]) -> list[T]:
    """``work(start, end)`` over ``range(count)`` cut into one piece per thread (one piece when ``count`` is small:
    a thread costs more than it saves below ``_MIN_LINES_PER_THREAD``), results in order. The C code releases the
    GIL, so the pieces run at once."""
    parts = max(1, min(_THREADS, count // _MIN_LINES_PER_THREAD))
    bounds = np.linspace(0, count, parts + 1).astype(np.int64).tolist()
    pieces = list(zip(bounds[:-1], bounds[1:], strict=True))
    if parts == 1:
        return [work(*pieces[0])]
    with ThreadPoolExecutor(max_workers=parts) as pool:
        return list(pool.map(lambda piece: work(*piece), pieces))


def classify(raw: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Per line of ``raw`` (a ``large_string`` column of lines): the fast path's guess as an index into
    ``fast.STREAM_MARKS`` plus one (0: none), and whether the line may be a connect record (it contains
    ``connect`` or a backslash)."""
    assert _framescan is not None
    raw = _single(raw)
    offsets, data = _offsets(raw), raw.buffers()[2]
    if data is None:  # no line has a byte
        return np.zeros(len(raw), dtype=np.int8), np.zeros(len(raw), dtype=np.bool_)
    results = _in_threads(len(raw), lambda start, end: _framescan.classify(data, offsets[start : end + 1]))
    kinds = np.concatenate([np.frombuffer(kinds, dtype=np.int8) for kinds, _ in results])
    may_connect = np.concatenate([np.frombuffer(connect, dtype=np.bool_) for _, connect in results])
    return kinds, may_connect


def scan(
    raw: pa.Array | pa.ChunkedArray,
    line_numbers: np.ndarray,
    rows: np.ndarray,
    levels: bool,
    typed: dict[str, str] | None = None,
) -> Scanned:
    """Scan the lines ``rows`` (0-based positions) of ``raw`` (a ``large_string`` column of lines, each with its
    newline) whose line numbers are ``line_numbers[rows]``. ``typed`` maps slots to ``int`` or ``dec``: those come
    as ``typed_name`` columns instead of text, and a line whose value there does not convert exactly is rejected.
    Runs in two threads when there are many lines."""
    assert _framescan is not None
    typed = typed or {}
    raw = _single(raw)
    offsets, data = _offsets(raw), raw.buffers()[2]
    masks = {
        convert: sum(1 << k for k, key in enumerate(_framescan.KEYS) if typed.get(slot_of_key(key)) == convert)
        for convert in TYPED_PREFIX
    }
    rows = rows.astype(np.int64, copy=False)

    def one(start: int, end: int) -> Scanned:
        part = rows[start:end]
        result = _framescan.scan(data, offsets, part, levels, masks["int"], masks["dec"])
        return _to_arrow(result, line_numbers[part], levels, typed)

    scanned = _in_threads(len(rows), one)
    return Scanned(
        np.concatenate([part.accepted for part in scanned]),
        pa.concat_tables([part.table for part in scanned]),
    )


def _to_arrow(
    result: tuple[bytes, bytes, list, list], line_numbers: np.ndarray, levels: bool, typed: dict[str, str]
) -> Scanned:
    accepted_bytes, combined, slots, level_sides = result
    accepted = np.frombuffer(accepted_bytes, dtype=np.bool_)
    count = len(memoryview(combined))
    columns: dict[str, pa.Array] = {
        "line": pa.array(line_numbers[accepted]),
        "combined": pa.array(np.frombuffer(combined, dtype=np.bool_)),
    }
    for key, (offsets, values, valid) in zip(_framescan.KEYS, slots, strict=True):
        mask = pa.py_buffer(valid)
        slot = slot_of_key(key)
        if offsets is None:
            kind = pa.int64() if typed[slot] == "int" else _SCALED
            columns[typed_name(slot, typed[slot])] = pa.Array.from_buffers(kind, count, [mask, pa.py_buffer(values)])
        else:
            columns[slot] = pa.Array.from_buffers(
                pa.string(), count, [mask, pa.py_buffer(offsets), pa.py_buffer(values)]
            )
    if levels:
        for name, (offsets, prices, qtys) in zip(LEVEL_COLUMNS, level_sides, strict=True):
            columns[name] = _levels_array(count, offsets, prices, qtys)
    return Scanned(accepted, pa.table(columns))


def _levels_array(count: int, offsets: bytes, prices: bytes, qtys: bytes) -> pa.Array:
    """Lists of (price, qty) from the scanner's decimal128 buffers."""

    def decimals(values: bytes) -> pa.Array:
        return pa.Array.from_buffers(schema.PRICE, len(memoryview(values)) // 16, [None, pa.py_buffer(values)])

    levels = pa.StructArray.from_arrays([decimals(prices), decimals(qtys)], names=["price", "qty"])
    return pa.ListArray.from_arrays(pa.array(np.frombuffer(offsets, dtype=np.int32)), levels, type=LEVEL_TYPE)

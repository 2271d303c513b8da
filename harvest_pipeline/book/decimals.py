"""Exact decimals as scaled integers: Arrow ``DECIMAL(18, 8)`` columns to and from int64 arrays of 1e-8 units.

A book is keyed by price; floats as keys would merge or split levels. ``DECIMAL(18, 8)`` values fit in 63 bits, so an
Arrow decimal128 array's low 64-bit words *are* its values as scaled integers: reading and building them is a view of
the buffer, not a per-value conversion.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from harvest_pipeline.schema import PRICE

SCALE = 10**8
"""Units per 1: ``PRICE`` and ``QTY`` have 8 decimals."""


def scaled_ints(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The int64 scaled values (1e-8 units) of a ``DECIMAL(18, 8)`` array without nulls."""
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 0:
            return np.empty(0, dtype=np.int64)
        return np.concatenate([scaled_ints(chunk) for chunk in values.chunks])
    if values.type != PRICE:
        raise TypeError(f"expected {PRICE}, got {values.type}")
    if values.null_count:
        raise ValueError("a price or quantity is null")
    words = np.frombuffer(values.buffers()[1], dtype=np.int64)
    return words[2 * values.offset : 2 * (values.offset + len(values)) : 2].copy()


def decimal_array(scaled: np.ndarray) -> pa.Array:
    """A ``DECIMAL(18, 8)`` array holding ``scaled`` (int64, 1e-8 units)."""
    low = np.ascontiguousarray(scaled, dtype=np.int64)
    words = np.empty(2 * len(low), dtype=np.int64)
    words[0::2] = low
    words[1::2] = low >> 63
    return pa.Array.from_buffers(PRICE, len(low), [None, pa.py_buffer(words)])

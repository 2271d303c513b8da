"""Every table a reader can ask for by name, its schema, its time column and what makes two of its rows the same.

- the raw kinds compaction writes (``prices``, ``orderbook`` ... ``events``): parts of segments, later one
  consolidated day file per day x symbol; rows are deduplicated by the kind's identity (``store.identity``);
- ``<raw kind>_daily``: the Dagster name of a consolidated raw kind; it reads the same folder (before consolidation
  the parts, after it the day file), so it is an alias of the raw kind;
- the derived kinds, one file per day x symbol written whole: ``features_1s``, ``completeness``, ``book_validity``,
  ``book_1s``, ``book_checkpoint``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from harvest_pipeline.compaction.kinds import KIND_BY_NAME
from harvest_pipeline.schema import BOOK_KINDS, COMPLETENESS, FEATURES_1S, RAW_KINDS
from harvest_pipeline.store.identity import DEDUP_KEYS, KEEP_FIRST

DAILY_SUFFIX = "_daily"


@dataclass(frozen=True)
class ReadableKind:
    """How one kind is read: its folder name, schema, time column (None: one row set per day) and identity."""

    folder: str
    schema: pa.Schema
    time_column: str | None
    keys: tuple[str, ...] = ()
    """Columns identifying a row across files (empty: files never overlap)."""
    keep_first: str = ""
    """SQL ordering duplicates before receive order; the first is kept."""


def _raw(kind: str) -> ReadableKind:
    time_column = "event_time_ms" if kind == "events" else KIND_BY_NAME[kind].time_column
    return ReadableKind(kind, RAW_KINDS[kind], time_column, DEDUP_KEYS[kind], KEEP_FIRST.get(kind, ""))


READABLE_KINDS: dict[str, ReadableKind] = {
    **{kind: _raw(kind) for kind in RAW_KINDS},
    **{f"{kind}{DAILY_SUFFIX}": _raw(kind) for kind in RAW_KINDS if kind in DEDUP_KEYS},
    "features_1s": ReadableKind("features_1s", FEATURES_1S, "time_ms"),
    "completeness": ReadableKind("completeness", COMPLETENESS, None),
    "book_validity": ReadableKind("book_validity", BOOK_KINDS["book_validity"], "from_time_ms"),
    "book_1s": ReadableKind("book_1s", BOOK_KINDS["book_1s"], "time_ms"),
    "book_checkpoint": ReadableKind("book_checkpoint", BOOK_KINDS["book_checkpoint"], "time_ms"),
}


def readable_kind(name: str) -> ReadableKind:
    """The kind called ``name``; ``ValueError`` listing every readable kind otherwise."""
    try:
        return READABLE_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown kind {name!r}: readable kinds are {', '.join(READABLE_KINDS)}") from None

"""Continuity of exchange ids inside one segment: aggTrade ``a`` jumps and depth-diff ``pu`` breaks.

``a`` increases by exactly 1 per symbol, and every depth diff's ``pu`` equals the previous diff's ``u``
(reference/binance.md). A break the collector already wrote down (a ``gap`` or ``write_loss`` record covering the same
ids, or a receive-time range or receive time between the two frames) is *explained*; anything else is reported
with ids and times.
Partial-book streams (``@depthN``) carry ``pu`` too but are full snapshots, so only diff streams are checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harvest_pipeline.compaction.ledger import symbol_of

EXPLAINING_EVENTS = frozenset({"gap", "write_loss", "backfill"})
_DIFF_STREAM = re.compile(r"@depth(@[0-9]+ms)?$")


@dataclass(frozen=True)
class Gap:
    """One break in an id sequence: for ``agg_trade_id`` ids ``last_id+1 .. next_id-1`` are missing; for ``pu`` the
    diff after ``last_id`` says its predecessor was ``next_id``."""

    check_name: str
    symbol: str
    stream: str
    last_id: int
    next_id: int
    last_time_ms: int
    next_time_ms: int
    last_recv_ms: int
    next_recv_ms: int
    explained_by_line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for metadata."""
        return asdict(self)


def find_gaps(kinds: Mapping[str, pa.Table], events: list[dict[str, Any]]) -> list[Gap]:
    """All id breaks among the rows of each kind (``prices`` and ``orderbook`` are read), each marked with the line
    of the collector record that explains it, if any."""
    found = _breaks(kinds["prices"], "agg_trade_id", "agg_trade_id", "agg_trade_id", 1, "trade_time_ms")
    diffs = kinds["orderbook"]
    found += _breaks(diffs, "pu", "final_update_id", "prev_final_update_id", 0, "event_time_ms", _DIFF_STREAM)
    explaining = [event for event in events if event["event"] in EXPLAINING_EVENTS]
    return [_explain(gap, explaining) for gap in found]


def _breaks(
    rows: pa.Table,
    check_name: str,
    id_column: str,
    claim_column: str,
    step: int,
    time_column: str,
    streams: re.Pattern[str] | None = None,
) -> list[Gap]:
    """Per stream (those ``streams`` finds, else all), rows in ``id_column`` order: a break wherever a row's
    ``claim_column`` minus ``step`` is not the previous row's ``id_column`` (``a - 1`` = previous ``a``; ``pu`` =
    previous ``u``). numpy: one stable sort of the ids per stream (the rows are unique per stream and id)."""
    if rows.num_rows == 0:
        return []
    columns = {name: rows.column(name).to_numpy() for name in (id_column, claim_column, time_column, "recv_time_ns")}
    symbols = rows.column("symbol")
    found = []
    for stream in pc.unique(rows.column("stream")).to_pylist():
        if streams is not None and not streams.search(stream):
            continue
        at = np.flatnonzero(pc.equal(rows.column("stream"), stream).to_numpy(zero_copy_only=False))
        at = at[np.argsort(columns[id_column][at], kind="stable")]
        previous, current = at[:-1], at[1:]
        for i in np.flatnonzero(columns[claim_column][current] - step != columns[id_column][previous]):
            last, this = int(previous[i]), int(current[i])
            found.append(
                Gap(
                    check_name,
                    symbols[this].as_py(),
                    stream,
                    int(columns[id_column][last]),
                    int(columns[claim_column][this]),
                    int(columns[time_column][last]),
                    int(columns[time_column][this]),
                    int(columns["recv_time_ns"][last]) // 1_000_000,
                    int(columns["recv_time_ns"][this]) // 1_000_000,
                )
            )
    return found


def _explain(gap: Gap, explaining: list[dict[str, Any]]) -> Gap:
    for event in explaining:
        if event["symbol"] not in (gap.symbol, symbol_of(None)):
            continue
        if _covers(event, gap):
            return Gap(**{**asdict(gap), "explained_by_line": event["line"]})
    return gap


def _covers(event: dict[str, Any], gap: Gap) -> bool:
    low, high = sorted((gap.last_id, gap.next_id))
    if event["from_id"] is not None and event["to_id"] is not None:
        return event["from_id"] <= high and event["to_id"] >= low
    if event["from_time_ms"] is not None and event["to_time_ms"] is not None:
        return event["from_time_ms"] <= gap.next_recv_ms and event["to_time_ms"] >= gap.last_recv_ms
    return gap.last_recv_ms <= event["event_time_ms"] <= gap.next_recv_ms

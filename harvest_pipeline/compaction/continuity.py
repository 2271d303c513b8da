"""Continuity of exchange ids inside one segment: aggTrade ``a`` jumps and depth-diff ``pu`` breaks.

``a`` increases by exactly 1 per symbol, and every depth diff's ``pu`` equals the previous diff's ``u``
(reference/binance.md). A break the collector already wrote down (a ``gap`` or ``write_loss`` record covering the same
ids, or a receive-time range or receive time between the two frames) is *explained*; anything else is reported
with ids and times.
Partial-book streams (``@depthN``) carry ``pu`` too but are full snapshots, so only diff streams are checked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import duckdb

from harvest_pipeline.compaction.ledger import symbol_of

EXPLAINING_EVENTS = frozenset({"gap", "write_loss", "backfill"})

_AGG_ID_JUMPS = """
SELECT 'agg_trade_id' AS check_name, symbol, stream, prev_id AS last_id, agg_trade_id AS next_id,
       prev_time AS last_time_ms, trade_time_ms AS next_time_ms, prev_recv // 1000000 AS last_recv_ms,
       recv_time_ns // 1000000 AS next_recv_ms
FROM (
    SELECT *, lag(agg_trade_id) OVER w AS prev_id, lag(trade_time_ms) OVER w AS prev_time,
           lag(recv_time_ns) OVER w AS prev_recv
    FROM out_prices WINDOW w AS (PARTITION BY stream ORDER BY agg_trade_id)
)
WHERE agg_trade_id <> prev_id + 1
"""

_PU_BREAKS = """
SELECT 'pu' AS check_name, symbol, stream, prev_u AS last_id, prev_final_update_id AS next_id,
       prev_time AS last_time_ms, event_time_ms AS next_time_ms, prev_recv // 1000000 AS last_recv_ms,
       recv_time_ns // 1000000 AS next_recv_ms
FROM (
    SELECT *, lag(final_update_id) OVER w AS prev_u, lag(event_time_ms) OVER w AS prev_time,
           lag(recv_time_ns) OVER w AS prev_recv
    FROM out_orderbook WHERE regexp_matches(stream, '@depth(@[0-9]+ms)?$')
    WINDOW w AS (PARTITION BY stream ORDER BY final_update_id)
)
WHERE prev_final_update_id <> prev_u
"""


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


def find_gaps(con: duckdb.DuckDBPyConnection, events: list[dict[str, Any]]) -> list[Gap]:
    """All id breaks of the segment held in ``con`` (tables ``out_prices`` and ``out_orderbook``), each marked with
    the line of the collector record that explains it, if any."""
    found = [Gap(*row) for query in (_AGG_ID_JUMPS, _PU_BREAKS) for row in con.sql(query).fetchall()]
    explaining = [event for event in events if event["event"] in EXPLAINING_EVENTS]
    return [_explain(gap, explaining) for gap in found]


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

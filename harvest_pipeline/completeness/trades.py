"""The aggTrade sequence of one day: every id from the day before's last id + 1 to the day's last id is ``ws``,
``rest`` or missing, worked out on runs of ids (gaps and islands), never one row per id.

Rows are deduplicated by ``agg_trade_id`` (parts may overlap), a websocket row winning over a REST one. The holes are
the maximal runs of ids without a websocket row, split into sub-runs that are wholly REST (``healed``) or wholly
missing (``declared`` or ``unexplained``, ``holes.judge_holes``).
"""

from __future__ import annotations

from typing import Any

import duckdb

from harvest_pipeline.completeness.holes import TRADE_EXPLANATIONS, judge_holes
from harvest_pipeline.store.identity import KEEP_FIRST

AGG_TRADE_SEQUENCE = "agg_trade_id"

_TRADES = f"""
CREATE OR REPLACE TEMP TABLE trades AS
SELECT agg_trade_id AS id, CASE WHEN source = 'ws' THEN 'ws' ELSE 'rest' END AS source,
       event_time_ms AS t, recv_time_ns AS r
FROM prices_day
QUALIFY row_number() OVER (PARTITION BY agg_trade_id ORDER BY {KEEP_FIRST["prices"]}, recv_time_ns, segment, line) = 1
"""
"""One row per trade id, the store's own rule choosing among duplicates (``store.identity``: websocket first)."""

_DAY_BEFORE_LAST = f"""
SELECT agg_trade_id, event_time_ms, recv_time_ns FROM prices_before
ORDER BY agg_trade_id DESC, {KEEP_FIRST["prices"]}, recv_time_ns LIMIT 1
"""

_COUNTS = """
SELECT count(*), count(*) FILTER (source = 'ws'), count(*) FILTER (source = 'rest'), min(id), max(id) FROM trades
"""

# The anchor is the day before's last trade: the day's sequence continues from it. ``edges`` keeps only the rows
# where something starts or ends (an id jump, a REST row), with their neighbours.
_EDGES = """
CREATE OR REPLACE TEMP TABLE edges AS
SELECT * FROM (
    SELECT id, source, t,
           lag(id) OVER w AS prev_id, lag(source) OVER w AS prev_source, lag(t) OVER w AS prev_t,
           lead(id) OVER w AS next_id, lead(source) OVER w AS next_source, lead(t) OVER w AS next_t
    FROM (
        SELECT id, source, t FROM trades
        UNION ALL SELECT $anchor_id, 'anchor', $anchor_t WHERE $anchor_id IS NOT NULL
    )
    WINDOW w AS (ORDER BY id)
)
WHERE id > prev_id + 1 OR source = 'rest'
"""

_HOLES = """
CREATE OR REPLACE TEMP TABLE holes AS
WITH rest_starts AS (
    SELECT id, prev_t, row_number() OVER (ORDER BY id) AS run FROM edges
    WHERE source = 'rest' AND (prev_source IS DISTINCT FROM 'rest' OR prev_id <> id - 1)
),
rest_ends AS (
    SELECT id, next_t, row_number() OVER (ORDER BY id) AS run FROM edges
    WHERE source = 'rest' AND (next_source IS DISTINCT FROM 'rest' OR next_id <> id + 1)
),
runs AS (
    SELECT prev_id + 1 AS first_id, id - 1 AS last_id, id - prev_id - 1 AS ids, 'missing' AS kind,
           prev_t AS after_time_ms, t AS before_time_ms
    FROM edges WHERE id > prev_id + 1
    UNION ALL
    SELECT s.id, e.id, e.id - s.id + 1, 'rest', s.prev_t, e.next_t FROM rest_starts s JOIN rest_ends e USING (run)
),
ws_rows AS (
    SELECT id, r FROM trades WHERE source = 'ws'
    UNION ALL SELECT $anchor_id, $anchor_r WHERE $anchor_id IS NOT NULL
)
SELECT runs.*, a.r AS after_recv_ns, b.r AS before_recv_ns
FROM runs ASOF LEFT JOIN ws_rows a ON runs.first_id > a.id ASOF LEFT JOIN ws_rows b ON runs.last_id < b.id
"""
"""The holes: missing runs (between two rows an id jump) and REST runs, with the receive times of the websocket rows
around them (REST rows were received when fetched, long after the trade)."""


def trade_certificate(con: duckdb.DuckDBPyConnection, symbol: str) -> dict[str, Any] | None:
    """The certificate row of ``<symbol>@aggTrade`` from the views ``prices_day`` and ``prices_before`` and the
    ledger ``events_raw``; None when the day has no trade."""
    stream = f"{symbol.lower()}@aggTrade"
    con.execute(_TRADES)
    [(rows, rows_ws, rows_rest, first_present, last_id)] = con.execute(_COUNTS).fetchall()
    if rows == 0:
        return None
    before = con.execute(_DAY_BEFORE_LAST).fetchone()
    previous_last_id = before[0] if before else None
    anchor = before if before and before[0] < first_present else (None, None, None)
    con.execute(_EDGES, {"anchor_id": anchor[0], "anchor_t": anchor[1]})
    con.execute(_HOLES, {"anchor_id": anchor[0], "anchor_r": anchor[2]})
    judged = judge_holes(con, stream, TRADE_EXPLANATIONS)
    return {
        "stream": stream,
        "sequence": AGG_TRADE_SEQUENCE,
        "first_id": first_present if anchor[0] is None else anchor[0] + 1,
        "last_id": last_id,
        "previous_day_last_id": previous_last_id,
        "rows": rows,
        "rows_ws": rows_ws,
        "rows_rest": rows_rest,
        "ids_missing": judged.ids_missing,
        **judged.columns(),
        "book_chain_seconds": None,
        "book_chain_share": None,
        "book_synced_at_end": None,
    }

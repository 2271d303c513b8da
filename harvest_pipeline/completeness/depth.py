"""The diff-depth sequence of one day: ``pu`` breaks and how much of the day a local book could be kept.

Diffs are deduplicated by ``u`` (``final_update_id``) and ordered by it; a diff whose ``pu`` is not the previous
diff's ``u`` (or, for the day's first diff, the day before's last ``u``) is a break: one hole, ``declared`` or
``unexplained`` (a book cannot be backfilled, so never ``healed``). Between breaks the diffs form chains. A chain is
synchronised from the first diff a REST snapshot ``L`` lets a book start at (``U <= L <= u``, or ``pu == L``), or from
its first diff when it continues the day before without a break and the day before's certificate says its book was
synchronised at the end; it stays synchronised to its last diff.
"""

from __future__ import annotations

import re
from typing import Any

import duckdb

from harvest_pipeline.completeness.holes import DEPTH_EXPLANATIONS, judge_holes

DEPTH_SEQUENCE = "depth_pu"
SECONDS_PER_DAY = 86_400

_DIFFS = """
CREATE OR REPLACE TEMP TABLE diffs AS
SELECT first_update_id AS first_u, final_update_id AS u, prev_final_update_id AS pu, event_time_ms AS t,
       recv_time_ns AS r
FROM orderbook_day
QUALIFY row_number() OVER (PARTITION BY final_update_id ORDER BY recv_time_ns, segment, line) = 1
"""

_DAY_BEFORE_LAST = """
SELECT final_update_id, event_time_ms, recv_time_ns FROM orderbook_before
ORDER BY final_update_id DESC, recv_time_ns LIMIT 1
"""

_COUNTS = "SELECT count(*), arg_min(first_u, u), min(u), max(u) FROM diffs"

# Each diff with the previous one (the day before's last diff, the anchor, precedes the day's first) and the
# number of its chain: a new chain starts at every break.
_CHAINS = """
CREATE OR REPLACE TEMP TABLE chained AS
SELECT *, sum(CASE WHEN prev_u IS NULL OR pu <> prev_u THEN 1 ELSE 0 END)
              OVER (ORDER BY u ROWS UNBOUNDED PRECEDING) AS chain
FROM (
    SELECT *, lag(u) OVER w AS prev_u, lag(t) OVER w AS prev_t, lag(r) OVER w AS prev_r
    FROM (
        SELECT first_u, u, pu, t, r, false AS is_anchor FROM diffs
        UNION ALL SELECT NULL, $anchor_u, NULL, $anchor_t, $anchor_r, true WHERE $anchor_u IS NOT NULL
    )
    WINDOW w AS (ORDER BY u)
)
"""

_HOLES = """
CREATE OR REPLACE TEMP TABLE holes AS
SELECT prev_u AS first_id, pu AS last_id, NULL::BIGINT AS ids, 'break' AS kind, prev_t AS after_time_ms,
       t AS before_time_ms, prev_r AS after_recv_ns, r AS before_recv_ns
FROM chained WHERE NOT is_anchor AND pu <> prev_u
"""

# For each snapshot L, the first diff with u >= L: a book starts there if U <= L, or if pu == L (the snapshot is the
# state right before it). Per chain: synchronised from the earliest such diff, or from its first diff when it
# continues the day before whose book was synchronised at its end.
_BOOK = """
WITH starts AS (
    SELECT d.chain, d.t
    FROM (SELECT DISTINCT last_update_id AS l FROM depth_snapshots) s
    ASOF JOIN (SELECT * FROM chained WHERE NOT is_anchor) d ON s.l <= d.u
    WHERE d.first_u <= s.l OR d.pu = s.l
),
chains AS (
    SELECT chain, bool_or(is_anchor) AS continues, min(t) FILTER (NOT is_anchor) AS first_t,
           max(t) FILTER (NOT is_anchor) AS last_t
    FROM chained GROUP BY chain HAVING count(*) FILTER (NOT is_anchor) > 0
),
synced AS (
    SELECT c.chain, c.last_t,
           CASE WHEN c.continues AND $synced_before THEN c.first_t ELSE min(s.t) END AS synced_from
    FROM chains c LEFT JOIN starts s USING (chain)
    GROUP BY c.chain, c.continues, c.first_t, c.last_t
)
SELECT coalesce(sum(last_t - synced_from) / 1000.0, 0.0), bool_or(synced_from IS NOT NULL) FILTER (
    WHERE chain = (SELECT max(chain) FROM synced))
FROM synced
"""


def depth_stream(con: duckdb.DuckDBPyConnection, symbol: str) -> str:
    """The diff-depth stream of ``symbol`` as the ledger names it (``orderbook`` files do not store it): the most
    frequent ``<symbol>@depth[@Nms]`` among the records' streams and the streams connections subscribed, else
    ``<symbol>@depth``."""
    pattern = f"{re.escape(symbol.lower())}@depth(@[0-9]+ms)?"
    found = con.execute(
        """
        SELECT stream FROM (
            SELECT stream FROM events_raw
            UNION ALL
            SELECT unnest(TRY(from_json(json_extract(detail, '$.streams'), '["VARCHAR"]')))
            FROM events_raw WHERE event IN ('connect', 'subscribed')
        )
        WHERE regexp_full_match(stream, $pattern)
        GROUP BY stream ORDER BY count(*) DESC, stream LIMIT 1
        """,
        {"pattern": pattern},
    ).fetchone()
    return found[0] if found else f"{symbol.lower()}@depth"


def depth_certificate(con: duckdb.DuckDBPyConnection, symbol: str, synced_before: bool) -> dict[str, Any] | None:
    """The certificate row of ``symbol``'s diff-depth stream from the views ``orderbook_day``, ``orderbook_before``,
    ``depth_snapshots`` and ``events_raw``; None when the day has no diff. ``synced_before``: the day before's
    certificate says its book was synchronised at its end."""
    con.execute(_DIFFS)
    [(rows, first_u, first_present, last_u)] = con.execute(_COUNTS).fetchall()
    if rows == 0:
        return None
    before = con.execute(_DAY_BEFORE_LAST).fetchone()
    anchor = before if before and before[0] < first_present else (None, None, None)
    con.execute(_CHAINS, {"anchor_u": anchor[0], "anchor_t": anchor[1], "anchor_r": anchor[2]})
    con.execute(_HOLES)
    stream = depth_stream(con, symbol)
    judged = judge_holes(con, stream, DEPTH_EXPLANATIONS)
    [(seconds, synced_at_end)] = con.execute(_BOOK, {"synced_before": synced_before}).fetchall()
    return {
        "stream": stream,
        "sequence": DEPTH_SEQUENCE,
        "first_id": first_u,
        "last_id": last_u,
        "previous_day_last_id": before[0] if before else None,
        "rows": rows,
        "rows_ws": rows,
        "rows_rest": 0,
        "ids_missing": None,
        **judged.columns(),
        "book_chain_seconds": float(seconds),
        "book_chain_share": float(seconds) / SECONDS_PER_DAY,
        "book_synced_at_end": bool(synced_at_end),
    }

"""DuckDB SQL for the set-based per-second columns: trades, L1 book, OFI, depth, latency, feed-gap and recording flags.

``load_day`` reads the views ``prices_raw``, ``bookticker_raw``, ``events_raw``, ``mark_price_raw``,
``liquidations_raw`` and ``open_interest_raw`` (see ``sources``) once, into temp tables (the day's rows deduplicated
by exchange id or time); every statement after
it reads those tables and the view ``book_raw``. Reading each kind once matters during the day, when a kind is 1,440
one-minute part files: DuckDB pays per file and per column chunk, not per row. Every statement takes ``$day_start``
(epoch ms of 00:00 UTC). Each row is bucketed by the clock that assigned it to its date partition in compaction, so
every row of the partition lands in one of the day's 86,400 seconds and no row falls between two days: trades by trade
time ``T`` (``trade_time_ms``), L1 updates by event time ``E``, ledger records by their receive time; the
reconstructed book (``book_1s``) has one row per second already.

Sums (volumes, CVD, OFI, depth) are accumulated as exact DECIMALs and cast to DOUBLE only at the end: the result does
not depend on summation order, so a re-run (or another thread count) gives bit-identical features.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

# The day's trades, one per aggTrade id: the earliest received, a websocket row before a REST one.
TRADES = """
SELECT agg_trade_id, price, qty, is_buyer_maker, CASE WHEN source = 'ws' THEN latency_ms END AS latency_ms,
       recv_time_ns, (trade_time_ms - $day_start) // 1000 AS second_of_day
FROM prices_raw
WHERE trade_time_ms >= $day_start AND trade_time_ms < $day_start + 86400000
QUALIFY row_number() OVER (PARTITION BY agg_trade_id ORDER BY source = 'rest', recv_time_ns, segment, line) = 1
"""

# One L1 update per exchange update id, ordered by it; e is the Cont-Kukanov-Stoikov contribution of update n
# (0 for the day's first update, whose predecessor is unknown: every comparison with NULL is false).
TICKS = """
WITH ticks_dedup AS (
    SELECT update_id, event_time_ms, bid_price AS b, bid_qty AS bq, ask_price AS a, ask_qty AS aq, latency_ms,
           recv_time_ns, (event_time_ms - $day_start) // 1000 AS second_of_day
    FROM bookticker_raw
    WHERE event_time_ms >= $day_start AND event_time_ms < $day_start + 86400000
    QUALIFY row_number() OVER (PARTITION BY update_id ORDER BY recv_time_ns, segment, line) = 1
)
SELECT *,
    (CASE WHEN b >= lag(b) OVER w THEN bq ELSE 0 END)
  - (CASE WHEN b <= lag(b) OVER w THEN lag(bq) OVER w ELSE 0 END)
  - (CASE WHEN a <= lag(a) OVER w THEN aq ELSE 0 END)
  + (CASE WHEN a >= lag(a) OVER w THEN lag(aq) OVER w ELSE 0 END) AS e
FROM ticks_dedup
WINDOW w AS (ORDER BY update_id)
"""

# The ledger of the day and its neighbours (symbol's and connection-wide), each record once.
LEDGER = "SELECT DISTINCT * FROM events_raw"

# The day's mark price updates, liquidations and open interest samples, one per exchange time (their identity), the
# earliest received. A liquidation counts in the second of its trade time (its date partition's clock).
MARKS = """
SELECT event_time_ms, mark_price, index_price, funding_rate, (event_time_ms - $day_start) // 1000 AS second_of_day
FROM mark_price_raw
WHERE event_time_ms >= $day_start AND event_time_ms < $day_start + 86400000
QUALIFY row_number() OVER (PARTITION BY event_time_ms ORDER BY recv_time_ns, segment, line) = 1
"""
LIQUIDATIONS = """
SELECT side, filled_qty, (trade_time_ms - $day_start) // 1000 AS second_of_day
FROM liquidations_raw
WHERE trade_time_ms >= $day_start AND trade_time_ms < $day_start + 86400000
QUALIFY row_number() OVER (PARTITION BY event_time_ms ORDER BY recv_time_ns, segment, line) = 1
"""
OPEN_INTEREST = """
SELECT event_time_ms, open_interest, (event_time_ms - $day_start) // 1000 AS second_of_day
FROM open_interest_raw
WHERE event_time_ms >= $day_start AND event_time_ms < $day_start + 86400000
QUALIFY row_number() OVER (PARTITION BY event_time_ms ORDER BY recv_time_ns, segment, line) = 1
"""

# The reconstructed book of the day (book_1s: the state at each second's end). Only valid rows give levels: their
# level 1, the depth sums of the top 5 / top 20 quantities per side (exact decimals; fewer levels when the side is
# shorter) and the per-level OFI of the second. A second without a row (a partial or absent file) is not valid.
BOOK = """
book_rows AS (
    SELECT (time_ms - $day_start) // 1000 AS second_of_day, valid, diffs
    FROM book_raw
    WHERE time_ms >= $day_start AND time_ms < $day_start + 86400000
),
book_levels AS (
    SELECT (time_ms - $day_start) // 1000 AS second_of_day,
           bid_prices[1] AS b, ask_prices[1] AS a, bid_qtys[1] AS bq, ask_qtys[1] AS aq, ofi_levels,
           coalesce(list_sum(bid_qtys[1:5]), 0) AS bid_depth_l5, coalesce(list_sum(ask_qtys[1:5]), 0) AS ask_depth_l5,
           coalesce(list_sum(bid_qtys[1:20]), 0) AS bid_depth_l20,
           coalesce(list_sum(ask_qtys[1:20]), 0) AS ask_depth_l20
    FROM book_raw
    WHERE valid AND time_ms >= $day_start AND time_ms < $day_start + 86400000
),
l1_origin AS (  -- where the L1 columns of the day come from: bookTicker whenever the day has any of it
    SELECT CASE WHEN EXISTS (SELECT 1 FROM ticks) THEN 'bookticker'
                WHEN EXISTS (SELECT 1 FROM book_rows) THEN 'book'
                ELSE 'none' END AS l1_source
)"""

# A feed gap window [lo_ms, hi_ms]: its own time range when the ledger has one, a disconnect lasts until the next
# (re)connection record (or the end of the day), anything else is an instant. A connection closed because it was
# replaced (reason "replaced: lifetime rotation" or "replaced: <watchdog reason>") is no gap: its successor was
# connected before it closed.
GAP_WINDOWS = """
reconnects AS (
    SELECT event_time_ms FROM ledger WHERE event IN ('connect', 'subscribed', 'recovered')
),
gap_windows AS (
    SELECT event, stream, reason, count, event_time_ms,
           coalesce(from_time_ms, event_time_ms) AS lo_ms,
           coalesce(
               to_time_ms,
               CASE WHEN event = 'disconnect' THEN coalesce(
                   (SELECT min(r.event_time_ms) FROM reconnects r WHERE r.event_time_ms >= l.event_time_ms),
                   $day_start + 86400000 - 1)
               END,
               event_time_ms) AS hi_ms
    FROM ledger l
    WHERE event IN ('gap', 'write_loss', 'watchdog')
       OR (event = 'disconnect' AND NOT starts_with(coalesce(reason, ''), 'replaced'))
),
day_gap_windows AS (
    SELECT * FROM gap_windows WHERE hi_ms >= $day_start AND lo_ms < $day_start + 86400000
)"""

# Which seconds a collector was recording (docs/features.md, "recorded"). The span runs from the day's first record
# (ledger record or receive time of a trade or L1 update) -- or from 00:00 when a connection of the day before was
# still open at midnight -- to the day's last record. Down windows (disconnect -> next connection record, and the
# 'collector down' gaps a restarted collector declares) are merged; a second wholly inside one is not recorded.
RECORDING = """
day_records AS (
    SELECT event_time_ms AS ms FROM ledger WHERE event_time_ms >= $day_start AND event_time_ms < $day_start + 86400000
    UNION ALL SELECT recv_time_ns // 1000000 FROM trades
    UNION ALL SELECT recv_time_ns // 1000000 FROM ticks
),
connections_before_day AS (
    SELECT conn_id,
           max(event_time_ms) FILTER (WHERE event IN ('connect', 'subscribed')) AS opened_ms,
           max(event_time_ms) FILTER (WHERE event = 'disconnect') AS closed_ms
    FROM ledger WHERE event_time_ms < $day_start GROUP BY conn_id
),
recording_span AS (
    SELECT CASE WHEN EXISTS (SELECT 1 FROM connections_before_day WHERE opened_ms > coalesce(closed_ms, -1))
                THEN $day_start ELSE (SELECT min(ms) FROM day_records) END AS first_ms,
           (SELECT max(ms) FROM day_records) AS last_ms
),
down_windows AS (
    SELECT lo_ms, hi_ms,  -- a window starts an island unless it overlaps or touches an earlier one
           coalesce(lo_ms > 1 + max(hi_ms) OVER earlier, true)::INTEGER AS starts_island
    FROM gap_windows
    WHERE event = 'disconnect' OR (event = 'gap' AND starts_with(reason, 'collector down'))
    WINDOW earlier AS (ORDER BY lo_ms, hi_ms ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
),
down_islands AS (
    SELECT min(lo_ms) AS lo_ms, max(hi_ms) AS hi_ms
    FROM (
        SELECT *, sum(starts_island) OVER (ORDER BY lo_ms, hi_ms ROWS UNBOUNDED PRECEDING) AS island FROM down_windows
    )
    GROUP BY island
),
down_seconds AS (
    SELECT DISTINCT g.second_of_day
    FROM grid g JOIN down_islands w
      ON w.lo_ms <= $day_start + g.second_of_day * 1000 AND w.hi_ms >= $day_start + g.second_of_day * 1000 + 999
)"""

PER_SECOND = f"""
WITH {BOOK}, {GAP_WINDOWS},
grid AS (SELECT range AS second_of_day FROM range(86400)),
{RECORDING},
trade_seconds AS (
    SELECT second_of_day,
           arg_min(price, agg_trade_id) AS open, max(price) AS high, min(price) AS low,
           arg_max(price, agg_trade_id) AS close,
           sum(qty) AS volume, count(*) AS trade_count,
           sum(price::DECIMAL(38, 8) * qty::DECIMAL(38, 8)) AS quote_volume,
           coalesce(sum(qty) FILTER (WHERE NOT is_buyer_maker), 0) AS buy_volume,
           coalesce(sum(qty) FILTER (WHERE is_buyer_maker), 0) AS sell_volume
    FROM trades GROUP BY second_of_day
),
book_seconds AS (
    SELECT second_of_day,
           arg_max(b, update_id) AS b, arg_max(a, update_id) AS a,
           arg_max(bq, update_id) AS bq, arg_max(aq, update_id) AS aq,
           max(event_time_ms) AS last_book_ms, count(*) AS book_updates, sum(e) AS ofi
    FROM ticks GROUP BY second_of_day
),
mark_seconds AS (  -- the last mark price update of the second
    SELECT second_of_day, arg_max(mark_price, event_time_ms) AS mark, arg_max(index_price, event_time_ms) AS idx,
           arg_max(funding_rate, event_time_ms) AS funding
    FROM marks GROUP BY second_of_day
),
liquidation_seconds AS (
    SELECT second_of_day, sum(filled_qty) FILTER (WHERE side = 'BUY') AS liq_buy,
           sum(filled_qty) FILTER (WHERE side = 'SELL') AS liq_sell
    FROM liquidations GROUP BY second_of_day
),
open_interest_seconds AS (
    SELECT second_of_day, arg_max(open_interest, event_time_ms) AS oi, max(event_time_ms) AS oi_ms
    FROM open_interests GROUP BY second_of_day
),
latency_seconds AS (  -- both percentiles from one sort of the second's latencies
    SELECT second_of_day, latency_ms[1] AS latency_ms_p50, latency_ms[2] AS latency_ms_p99
    FROM (
        SELECT second_of_day, quantile_cont(latency_ms, [0.5, 0.99]) AS latency_ms
        FROM (SELECT second_of_day, latency_ms FROM trades UNION ALL SELECT second_of_day, latency_ms FROM ticks)
        GROUP BY second_of_day
    )
),
gap_seconds AS (
    SELECT DISTINCT g.second_of_day
    FROM grid g JOIN day_gap_windows w
      ON w.lo_ms < $day_start + (g.second_of_day + 1) * 1000 AND w.hi_ms >= $day_start + g.second_of_day * 1000
),
flagged AS (
    SELECT g.second_of_day, t.open, t.high, t.low, t.close, t.volume, t.quote_volume, t.buy_volume, t.sell_volume,
           t.trade_count, k.b, k.a, k.bq, k.aq, k.last_book_ms, k.book_updates, k.ofi,
           l.latency_ms_p50, l.latency_ms_p99, m.mark, m.idx, m.funding, q.liq_buy, q.liq_sell, o.oi, o.oi_ms,
           gs.second_of_day IS NOT NULL AS gap,
           t.trade_count IS NOT NULL OR k.book_updates IS NOT NULL OR (
               coalesce($day_start + (g.second_of_day + 1) * 1000 > span.first_ms
                        AND $day_start + g.second_of_day * 1000 <= span.last_ms, false)
               AND ds.second_of_day IS NULL) AS recorded
    FROM grid g
    CROSS JOIN recording_span span
    LEFT JOIN trade_seconds t USING (second_of_day)
    LEFT JOIN book_seconds k USING (second_of_day)
    LEFT JOIN latency_seconds l USING (second_of_day)
    LEFT JOIN mark_seconds m USING (second_of_day)
    LEFT JOIN liquidation_seconds q USING (second_of_day)
    LEFT JOIN open_interest_seconds o USING (second_of_day)
    LEFT JOIN gap_seconds gs USING (second_of_day)
    LEFT JOIN down_seconds ds USING (second_of_day)
),
stretches AS (
    SELECT *, sum((NOT recorded)::INTEGER) OVER (ORDER BY second_of_day ROWS UNBOUNDED PRECEDING) AS stretch
    FROM flagged
),
-- close and the book carry forward within a stretch of recorded seconds, never into or across an unrecorded one
carried AS (
    SELECT second_of_day, open, high, low, volume, quote_volume, buy_volume, sell_volume,
           coalesce(trade_count, 0) AS trade_count,
           last_value(close IGNORE NULLS) OVER in_stretch AS close,
           sum(coalesce(buy_volume - sell_volume, 0)) OVER running AS cvd,
           last_value(b IGNORE NULLS) OVER in_stretch AS b,
           last_value(a IGNORE NULLS) OVER in_stretch AS a,
           last_value(bq IGNORE NULLS) OVER in_stretch AS bq,
           last_value(aq IGNORE NULLS) OVER in_stretch AS aq,
           last_value(last_book_ms IGNORE NULLS) OVER in_stretch AS last_book_ms,
           coalesce(book_updates, 0) AS book_updates, coalesce(ofi, 0) AS ofi,
           last_value(mark IGNORE NULLS) OVER in_stretch AS mark,
           last_value(idx IGNORE NULLS) OVER in_stretch AS idx,
           last_value(funding IGNORE NULLS) OVER in_stretch AS funding,
           coalesce(liq_buy, 0) AS liq_buy, coalesce(liq_sell, 0) AS liq_sell,
           last_value(oi IGNORE NULLS) OVER in_stretch AS oi,
           last_value(oi_ms IGNORE NULLS) OVER in_stretch AS oi_ms,
           latency_ms_p50, latency_ms_p99, gap, recorded
    FROM stretches
    WINDOW running AS (ORDER BY second_of_day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
           in_stretch AS (PARTITION BY stretch ORDER BY second_of_day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
floats AS (
    SELECT second_of_day, trade_count, latency_ms_p50, latency_ms_p99, gap, recorded,
           open::DOUBLE AS open, high::DOUBLE AS high, low::DOUBLE AS low, close::DOUBLE AS close,
           coalesce(volume, 0)::DOUBLE AS volume, coalesce(quote_volume, 0)::DOUBLE AS quote_volume,
           quote_volume::DOUBLE / volume::DOUBLE AS vwap,
           coalesce(buy_volume, 0)::DOUBLE AS buy_volume, coalesce(sell_volume, 0)::DOUBLE AS sell_volume,
           coalesce(buy_volume - sell_volume, 0)::DOUBLE AS delta, cvd::DOUBLE AS cvd,
           mark::DOUBLE AS mark_price, idx::DOUBLE AS index_price,
           CASE WHEN idx > 0 THEN ((mark - idx)::DECIMAL(38, 18) / idx)::DOUBLE * 1e4 END AS basis_bps,
           funding::DOUBLE AS funding_rate,
           liq_buy::DOUBLE AS liquidation_buy_volume, liq_sell::DOUBLE AS liquidation_sell_volume,
           oi::DOUBLE AS open_interest, ($day_start + (second_of_day + 1) * 1000 - oi_ms) / 1000 AS open_interest_age_s
    FROM carried
),
-- L1 from bookTicker (carried forward, stale after $stale_after_ms without an update) unless the day has none of it
-- but a reconstructed book: then each second's level 1 where the book is valid, null (and stale) elsewhere
ticker_l1 AS (
    SELECT second_of_day, b::DOUBLE AS b, a::DOUBLE AS a, bq::DOUBLE AS bq, aq::DOUBLE AS aq, book_updates,
           ofi::DOUBLE AS ofi,
           coalesce($day_start + (second_of_day + 1) * 1000 - last_book_ms > $stale_after_ms, true) AS book_stale
    FROM carried
    WHERE (SELECT l1_source FROM l1_origin) <> 'book'
),
book_l1 AS (
    SELECT g.second_of_day, v.b::DOUBLE AS b, v.a::DOUBLE AS a, v.bq::DOUBLE AS bq, v.aq::DOUBLE AS aq,
           coalesce(r.diffs, 0) AS book_updates, coalesce(v.ofi_levels[1], 0) AS ofi,
           v.second_of_day IS NULL AS book_stale
    FROM grid g
    LEFT JOIN book_rows r USING (second_of_day)
    LEFT JOIN book_levels v USING (second_of_day)
    WHERE (SELECT l1_source FROM l1_origin) = 'book'
),
l1 AS (SELECT * FROM ticker_l1 UNION ALL SELECT * FROM book_l1),
-- multi-level OFI and depth imbalance from the valid seconds of the reconstructed book, whatever the L1 source
depth AS (
    SELECT second_of_day,
           list_dot_product(ofi_levels, $ofi_level_weights) AS ofi_l5,
           (bid_depth_l5 - ask_depth_l5)::DOUBLE / nullif(bid_depth_l5 + ask_depth_l5, 0)::DOUBLE
               AS depth_imbalance_l5,
           (bid_depth_l20 - ask_depth_l20)::DOUBLE / nullif(bid_depth_l20 + ask_depth_l20, 0)::DOUBLE
               AS depth_imbalance_l20
    FROM book_levels
)
SELECT $day_start + second_of_day * 1000 AS time_ms, second_of_day::INTEGER AS second_of_day,
       open, high, low, close, volume, quote_volume, vwap, trade_count, buy_volume, sell_volume, delta, cvd,
       b AS best_bid, a AS best_ask, bq AS bid_size, aq AS ask_size,
       (b + a) / 2 AS mid,
       (a - b) / ((b + a) / 2) * 1e4 AS spread_bps,
       (b * aq + a * bq) / nullif(aq + bq, 0) AS microprice,
       (bq - aq) / nullif(bq + aq, 0) AS imbalance_l1,
       depth_imbalance_l5, depth_imbalance_l20,
       book_updates, ofi, ofi_l5,
       trade_count = 0 AS is_empty,
       book_stale, (SELECT l1_source FROM l1_origin) AS l1_source,
       latency_ms_p50, latency_ms_p99, gap, recorded,
       mark_price, index_price, basis_bps, funding_rate, liquidation_buy_volume, liquidation_sell_volume,
       open_interest, open_interest_age_s
FROM floats
JOIN l1 USING (second_of_day)
LEFT JOIN depth USING (second_of_day)
ORDER BY second_of_day
"""

DAY_GAPS = f"""
WITH {GAP_WINDOWS}
SELECT event, stream, reason, count, event_time_ms, lo_ms AS from_ms, hi_ms AS to_ms
FROM day_gap_windows ORDER BY lo_ms, event, event_time_ms
"""


DAY_LATENCY = """
SELECT percentiles[1] AS p50, percentiles[2] AS p99, rows
FROM (
    SELECT quantile_cont(latency_ms, [0.5, 0.99]) AS percentiles, count(latency_ms) AS rows
    FROM (SELECT latency_ms FROM trades UNION ALL SELECT latency_ms FROM ticks)
)
"""


def load_day(con: duckdb.DuckDBPyConnection, day_start: int) -> None:
    """Read the raw views once into the temp tables ``trades``, ``ticks``, ``ledger``, ``marks``, ``liquidations``
    and ``open_interests`` for the day starting at ``day_start`` (epoch ms); the statements below read only these
    (and ``book_raw``)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE trades AS {TRADES}", {"day_start": day_start})
    con.execute(f"CREATE OR REPLACE TEMP TABLE ticks AS {TICKS}", {"day_start": day_start})
    con.execute(f"CREATE OR REPLACE TEMP TABLE ledger AS {LEDGER}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE marks AS {MARKS}", {"day_start": day_start})
    con.execute(f"CREATE OR REPLACE TEMP TABLE liquidations AS {LIQUIDATIONS}", {"day_start": day_start})
    con.execute(f"CREATE OR REPLACE TEMP TABLE open_interests AS {OPEN_INTEREST}", {"day_start": day_start})


def per_second_columns(
    con: duckdb.DuckDBPyConnection, day_start: int, stale_after_ms: int, ofi_level_weights: Sequence[float]
) -> pa.Table:
    """Trade, book, OFI, depth and quality columns for all 86,400 seconds of the day starting at ``day_start`` (epoch
    ms, the day ``load_day`` loaded); ``ofi_l5`` weighs the book's per-level OFI by ``ofi_level_weights`` (one weight
    per level)."""
    params = {
        "day_start": day_start,
        "stale_after_ms": stale_after_ms,
        "ofi_level_weights": [float(weight) for weight in ofi_level_weights],
    }
    return con.sql(PER_SECOND, params=params).to_arrow_table()


def day_gap_windows(con: duckdb.DuckDBPyConnection, day_start: int) -> list[dict]:
    """The ledger's feed gaps overlapping the day, one dict each (event, stream, reason, count, times in ms)."""
    return con.sql(DAY_GAPS, params={"day_start": day_start}).to_arrow_table().to_pylist()


def day_latency(con: duckdb.DuckDBPyConnection) -> dict:
    """Percentiles of receive latency (recv - E, ms) over the day's deduplicated trades and L1 updates."""
    return con.sql(DAY_LATENCY).to_arrow_table().to_pylist()[0]

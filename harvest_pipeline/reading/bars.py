"""Bars from ``features_1s``: the SQL that aggregates its seconds into 1m ... 1d bars, with the right rule per column.

Prices: open is the first second's open, close the last second's close (seconds without trades have none), high the
maximum, low the minimum. Amounts are sums (volume, quote volume, buy/sell volume, delta, trades, book updates, OFI,
liquidations), and VWAP is the summed quote volume over the summed volume. State is read at the bar's end: CVD, mid,
best bid/ask, mark price, funding rate, open interest, fusion. Quality: the share of the bar's seconds in a feed gap
(``gap_share``) and recorded (``recorded_share``), and the seconds present. A bar starts at a multiple of its interval
from 00:00 UTC (every interval divides a day, so no bar straddles midnight).
"""

from __future__ import annotations

BAR_INTERVALS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}
"""Bar interval -> milliseconds."""

_LAST = ("cvd", "mid", "best_bid", "best_ask", "mark_price", "funding_rate", "open_interest", "fusion")
_SUM = ("volume", "quote_volume", "buy_volume", "sell_volume", "delta", "ofi", "ofi_l5", "liquidation_buy_volume",
        "liquidation_sell_volume")  # fmt: skip
_COUNT = ("trade_count", "book_updates")


def bars_sql(seconds: str, interval_ms: int) -> str:
    """SQL over the relation ``seconds`` (``features_1s`` rows with ``date`` and ``symbol``) giving one row per bar:
    ``bar_time`` (timestamp with time zone of its start), ``time_ms``, ``date``, ``symbol`` and the columns above."""
    last = ", ".join(f"arg_max({name}, time_ms) FILTER (WHERE {name} IS NOT NULL) AS {name}" for name in _LAST)
    summed = ", ".join(
        [*(f"sum({name}) AS {name}" for name in _SUM), *(f"sum({name})::BIGINT AS {name}" for name in _COUNT)]
    )
    return f"""
        SELECT make_timestamptz((time_ms // {interval_ms} * {interval_ms}) * 1000) AS bar_time,
               time_ms // {interval_ms} * {interval_ms} AS time_ms, any_value(date) AS date, symbol,
               arg_min(open, time_ms) FILTER (WHERE open IS NOT NULL) AS open,
               max(high) AS high, min(low) AS low,
               arg_max(close, time_ms) FILTER (WHERE close IS NOT NULL) AS close,
               {summed},
               sum(quote_volume) / nullif(sum(volume), 0) AS vwap,
               {last},
               avg(gap::INTEGER) AS gap_share, avg(recorded::INTEGER) AS recorded_share, count(*) AS seconds
        FROM {seconds}
        GROUP BY symbol, time_ms // {interval_ms}
        ORDER BY symbol, time_ms
        """

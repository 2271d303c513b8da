"""The identity of a row per kind: what makes two rows the same row (dedup key)."""

from __future__ import annotations

DEDUP_KEYS: dict[str, tuple[str, ...]] = {
    "prices": ("agg_trade_id",),
    "orderbook": ("final_update_id",),
    "bookticker": ("update_id",),
    "depth_snapshot": ("last_update_id",),
    "trades": ("trade_id",),
    "mark_price": ("event_time_ms",),
    "liquidations": ("event_time_ms",),
    "klines": ("open_time_ms",),
    "open_interest": ("event_time_ms",),
    "events": ("segment", "line"),
}
"""Exchange ids for market data, provenance (segment, line) for ledger records. Kinds without an id are identified by
their exchange time per symbol: a mark price update per second, a liquidation per second (Binance sends the latest of
each 1000 ms), an open interest answer per server time, a kline per open time (its states, below)."""

KEEP_FIRST: dict[str, str] = {"prices": "source = 'rest'", "klines": "is_closed DESC, event_time_ms DESC"}
"""SQL ordering duplicates of a kind before receive order: the first is kept (a trade seen on the websocket and
fetched by REST keeps its websocket row; of a minute's kline states the closed one, else the latest)."""
AGREEING_COLUMNS: dict[str, tuple[str, ...]] = {
    "prices": ("trade_time_ms", "first_trade_id", "last_trade_id", "price", "qty", "is_buyer_maker"),
}
"""Columns a REST row must share with the websocket row of the same trade; a difference is never deduplicated
silently (the exchange would have changed history): it is quarantined and counted."""

"""Arrow schemas of every Parquet kind harvest writes, in one place.

Files live under ``<parquet_root>/date=YYYY-MM-DD/symbol=SYM/kind=KIND/``; ``date``, ``symbol`` and ``kind`` come from
the path (hive partitioning) and are not repeated inside the files. ``date`` is always the UTC *event* date.

Conventions
- Prices and quantities are exact decimals parsed from the exchange's strings (``DECIMAL(18, 8)``: Binance USD-M
  never sends more than 8 decimals); a value that does not fit is quarantined, never rounded.
- Exchange times are int64 milliseconds since the epoch (UTC); the local receive time is int64 nanoseconds.
- Every raw row carries its provenance: segment name, line number and connection id.
"""

from __future__ import annotations

import pyarrow as pa

PRICE = pa.decimal128(18, 8)
QTY = pa.decimal128(18, 8)
LEVEL = pa.struct([pa.field("price", PRICE, nullable=False), pa.field("qty", QTY, nullable=False)])
LEVELS = pa.list_(pa.field("level", LEVEL, nullable=False))

PROVENANCE = [
    pa.field("recv_time_ns", pa.int64(), nullable=False),
    pa.field("conn_id", pa.string(), nullable=False),
    pa.field("segment", pa.string(), nullable=False),
    pa.field("line", pa.int64(), nullable=False),
]

PRICES = pa.schema(
    [
        pa.field("event_time_ms", pa.int64(), nullable=False),
        pa.field("trade_time_ms", pa.int64(), nullable=False),
        pa.field("agg_trade_id", pa.int64(), nullable=False),
        pa.field("first_trade_id", pa.int64(), nullable=False),
        pa.field("last_trade_id", pa.int64(), nullable=False),
        pa.field("price", PRICE, nullable=False),
        pa.field("qty", QTY, nullable=False),
        pa.field("is_buyer_maker", pa.bool_(), nullable=False),
        pa.field("latency_ms", pa.int64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        *PROVENANCE,
    ]
)
"""``prices``: one row per aggTrade. ``is_buyer_maker`` true means the taker sold. latency = recv - E.

``source`` says how the trade arrived: ``ws`` (the aggTrade stream) or ``rest`` (``GET /fapi/v1/aggTrades``, filling
a hole; a REST trade has no ``E``, so its ``event_time_ms`` is its trade time ``T`` and its latency is how long after
the trade it was fetched). Parquet written before the column existed reads as ``ws``."""

ORDERBOOK = pa.schema(
    [
        pa.field("event_time_ms", pa.int64(), nullable=False),
        pa.field("transaction_time_ms", pa.int64(), nullable=False),
        pa.field("first_update_id", pa.int64(), nullable=False),
        pa.field("final_update_id", pa.int64(), nullable=False),
        pa.field("prev_final_update_id", pa.int64(), nullable=False),
        pa.field("bids", LEVELS, nullable=False),
        pa.field("asks", LEVELS, nullable=False),
        pa.field("latency_ms", pa.int64(), nullable=False),
        *PROVENANCE,
    ]
)
"""``orderbook``: one row per depth diff (``U``, ``u``, ``pu``); quantities are absolute, qty 0 deletes a level."""

BOOKTICKER = pa.schema(
    [
        pa.field("event_time_ms", pa.int64(), nullable=False),
        pa.field("transaction_time_ms", pa.int64(), nullable=False),
        pa.field("update_id", pa.int64(), nullable=False),
        pa.field("bid_price", PRICE, nullable=False),
        pa.field("bid_qty", QTY, nullable=False),
        pa.field("ask_price", PRICE, nullable=False),
        pa.field("ask_qty", QTY, nullable=False),
        pa.field("latency_ms", pa.int64(), nullable=False),
        *PROVENANCE,
    ]
)
"""``bookticker``: one row per best bid/ask update."""

DEPTH_SNAPSHOT = pa.schema(
    [
        pa.field("event_time_ms", pa.int64(), nullable=False),
        pa.field("transaction_time_ms", pa.int64(), nullable=False),
        pa.field("last_update_id", pa.int64(), nullable=False),
        pa.field("bids", LEVELS, nullable=False),
        pa.field("asks", LEVELS, nullable=False),
        *PROVENANCE,
    ]
)
"""``depth_snapshot``: one row per REST ``/fapi/v1/depth`` response the collector stored."""

TRADES = pa.schema(
    [
        pa.field("event_time_ms", pa.int64(), nullable=False),
        pa.field("trade_time_ms", pa.int64(), nullable=False),
        pa.field("trade_id", pa.int64(), nullable=False),
        pa.field("price", PRICE, nullable=False),
        pa.field("qty", QTY, nullable=False),
        pa.field("is_buyer_maker", pa.bool_(), nullable=False),
        pa.field("order_type", pa.string()),
        pa.field("latency_ms", pa.int64(), nullable=False),
        *PROVENANCE,
    ]
)
"""``trades``: one row per individual trade of the ``<sym>@trade`` stream (``t``), recorded when that stream is
subscribed. The fills an aggTrade ``a`` aggregates are its trade ids ``f..l``. ``order_type`` is Binance's ``X``
(``MARKET``; other values mark special executions), null when absent."""

MARK_PRICE = pa.schema(
    [
        pa.field("event_time_ms", pa.int64(), nullable=False),
        pa.field("mark_price", PRICE, nullable=False),
        pa.field("index_price", PRICE, nullable=False),
        pa.field("estimated_settle_price", PRICE, nullable=False),
        pa.field("funding_rate", PRICE, nullable=False),
        pa.field("next_funding_time_ms", pa.int64(), nullable=False),
        pa.field("latency_ms", pa.int64(), nullable=False),
        *PROVENANCE,
    ]
)
"""``mark_price``: one row per ``markPriceUpdate`` (``<sym>@markPrice@1s``: one a second), identified by its event
time. ``funding_rate`` (``r``) is the rate of the funding at ``next_funding_time_ms`` (``T``) as estimated now; it
may be negative. ``index_price`` and ``estimated_settle_price`` may be 0 (no index yet)."""

LIQUIDATIONS = pa.schema(
    [
        pa.field("event_time_ms", pa.int64(), nullable=False),
        pa.field("trade_time_ms", pa.int64(), nullable=False),
        pa.field("side", pa.string(), nullable=False),
        pa.field("order_type", pa.string(), nullable=False),
        pa.field("time_in_force", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("price", PRICE, nullable=False),
        pa.field("avg_price", PRICE, nullable=False),
        pa.field("orig_qty", QTY, nullable=False),
        pa.field("last_filled_qty", QTY, nullable=False),
        pa.field("filled_qty", QTY, nullable=False),
        pa.field("latency_ms", pa.int64(), nullable=False),
        *PROVENANCE,
    ]
)
"""``liquidations``: one row per ``forceOrder`` event (the fields of its order ``o``), identified by its event time:
Binance sends at most one per symbol per second, the latest liquidation of that second, so this is a sample of the
liquidations, not all of them. ``side`` ``SELL`` liquidates a long (the liquidation order sells)."""

KLINES = pa.schema(
    [
        pa.field("event_time_ms", pa.int64(), nullable=False),
        pa.field("open_time_ms", pa.int64(), nullable=False),
        pa.field("close_time_ms", pa.int64(), nullable=False),
        pa.field("interval", pa.string(), nullable=False),
        pa.field("first_trade_id", pa.int64()),
        pa.field("last_trade_id", pa.int64()),
        pa.field("open", PRICE, nullable=False),
        pa.field("high", PRICE, nullable=False),
        pa.field("low", PRICE, nullable=False),
        pa.field("close", PRICE, nullable=False),
        pa.field("volume", QTY, nullable=False),
        pa.field("quote_volume", QTY, nullable=False),
        pa.field("taker_buy_volume", QTY, nullable=False),
        pa.field("taker_buy_quote_volume", QTY, nullable=False),
        pa.field("trade_count", pa.int64(), nullable=False),
        pa.field("is_closed", pa.bool_(), nullable=False),
        pa.field("latency_ms", pa.int64(), nullable=False),
        *PROVENANCE,
    ]
)
"""``klines``: one row per kline (``<sym>@kline_1m``: per minute, by ``open_time_ms``): the closed kline
(``is_closed``, Binance's ``x``) when it was recorded, else the latest state seen of the open one. Every update
before it counts as a duplicate. ``first_trade_id``/``last_trade_id`` are null for a minute without trades (Binance
sends ``-1``)."""

OPEN_INTEREST = pa.schema(
    [
        pa.field("event_time_ms", pa.int64(), nullable=False),
        pa.field("open_interest", QTY, nullable=False),
        *PROVENANCE,
    ]
)
"""``open_interest``: one row per ``GET /fapi/v1/openInterest`` answer the collector polled and stored verbatim,
identified by the server time of the answer (``time``). ``open_interest`` is in contracts (base asset)."""

EVENTS = pa.schema(
    [
        pa.field("event_time_ms", pa.int64(), nullable=False),
        pa.field("event", pa.string(), nullable=False),
        pa.field("stream", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("from_id", pa.int64()),
        pa.field("to_id", pa.int64()),
        pa.field("from_time_ms", pa.int64()),
        pa.field("to_time_ms", pa.int64()),
        pa.field("count", pa.int64()),
        pa.field("detail", pa.string()),
        *PROVENANCE,
    ]
)
"""``events``: the feed ledger (connect, disconnect, subscribed, watchdog, gap, write_loss, recovered, quarantine).

``from_id``/``to_id`` bound a gap in exchange ids, ``from_time_ms``/``to_time_ms`` the time it covers, ``count`` the
frames it concerns (e.g. frames dropped by a write loss); ``detail`` is the full control record as JSON. Events without
a symbol (a connection dropped) are filed under ``symbol=ALL``.
"""

COMPLETENESS_HOLE = pa.struct(
    [
        pa.field("first_id", pa.int64(), nullable=False),
        pa.field("last_id", pa.int64()),
        pa.field("ids", pa.int64()),
        pa.field("cause", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("after_time_ms", pa.int64()),
        pa.field("before_time_ms", pa.int64()),
    ]
)
"""One hole of a sequence. aggTrade: ids ``first_id..last_id`` (inclusive, ``ids`` of them) absent from the
websocket rows; depth: the diff after ``u = first_id`` claims ``pu = last_id`` (``ids`` unknown, null). ``cause`` is
``healed`` (every id of the range arrived by REST), ``declared`` (a collector or backfill record explains it;
``reason`` says what) or ``unexplained``. ``after_time_ms``/``before_time_ms``: event times of the rows around it."""

COMPLETENESS = pa.schema(
    [
        pa.field("stream", pa.string(), nullable=False),
        pa.field("sequence", pa.string(), nullable=False),
        pa.field("first_id", pa.int64()),
        pa.field("last_id", pa.int64()),
        pa.field("previous_day_last_id", pa.int64()),
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("rows_ws", pa.int64(), nullable=False),
        pa.field("rows_rest", pa.int64(), nullable=False),
        pa.field("ids_missing", pa.int64()),
        pa.field("holes", pa.list_(pa.field("hole", COMPLETENESS_HOLE, nullable=False)), nullable=False),
        pa.field("healed_holes", pa.int64(), nullable=False),
        pa.field("declared_holes", pa.int64(), nullable=False),
        pa.field("unexplained_holes", pa.int64(), nullable=False),
        pa.field("book_chain_seconds", pa.float64()),
        pa.field("book_chain_share", pa.float64()),
        pa.field("book_synced_at_end", pa.bool_()),
        pa.field("certified", pa.bool_(), nullable=False),
    ]
)
"""``completeness``: the certificate of one UTC day x symbol, one row per sequenced stream (``sequence`` is
``agg_trade_id`` or ``depth_pu``), across segment boundaries and from the previous day's last id. ``certified`` is
true when the stream has no ``unexplained`` hole. ``book_chain_*`` (depth only): time of the day covered by a diff
chain bridged to a REST snapshot, in seconds and as a share of 86,400. Defined in docs/completeness.md."""

BOOK_VALIDITY = pa.schema(
    [
        pa.field("from_time_ms", pa.int64(), nullable=False),
        pa.field("to_time_ms", pa.int64(), nullable=False),
        pa.field("first_update_id", pa.int64(), nullable=False),
        pa.field("last_update_id", pa.int64(), nullable=False),
        pa.field("diffs", pa.int64(), nullable=False),
        pa.field("start", pa.string(), nullable=False),
        pa.field("snapshot_update_id", pa.int64()),
        pa.field("end", pa.string(), nullable=False),
        pa.field("end_reason", pa.string()),
        pa.field("break_after_id", pa.int64()),
        pa.field("break_pu", pa.int64()),
    ]
)
"""``book_validity``: the intervals ``[from_time_ms, to_time_ms)`` (diff event times) of one UTC day x symbol in which
the reconstructed book is provably the exchange's. ``start``: ``snapshot`` (a REST snapshot ``lastUpdateId =
snapshot_update_id`` synchronised the diffs) or ``carried`` (the day before's last checkpoint continues into the day).
``end``: ``break`` (the diff at ``to_time_ms`` claims ``pu = break_pu`` but the book is at ``break_after_id``;
``end_reason`` says what the ledger records about it, or ``unexplained``), ``continues`` (the next day's first diff
continues the chain; ``to_time_ms`` is midnight) or ``end_of_data`` (no diff after ``last_update_id`` so far).
Defined in docs/book.md."""

BOOK_DEPTH = 20
"""Levels per side in ``book_1s``."""
OFI_LEVELS = 5
"""Levels of the per-level order-flow imbalance in ``book_1s``."""

BOOK_1S = pa.schema(
    [
        pa.field("time_ms", pa.int64(), nullable=False),
        pa.field("second_of_day", pa.int32(), nullable=False),
        pa.field("valid", pa.bool_(), nullable=False),
        pa.field("last_update_id", pa.int64()),
        pa.field("bid_prices", pa.list_(pa.field("item", PRICE, nullable=False))),
        pa.field("bid_qtys", pa.list_(pa.field("item", QTY, nullable=False))),
        pa.field("ask_prices", pa.list_(pa.field("item", PRICE, nullable=False))),
        pa.field("ask_qtys", pa.list_(pa.field("item", QTY, nullable=False))),
        pa.field("diffs", pa.int64(), nullable=False),
        pa.field("ofi_levels", pa.list_(pa.field("item", pa.float64(), nullable=False))),
    ]
)
"""``book_1s``: one row per UTC second of the day (86,400 per date x symbol): the book at the second's end (after every
diff with event time before ``time_ms + 1000``), top ``BOOK_DEPTH`` levels per side, best first, exact decimals.
``valid`` is false outside a ``book_validity`` interval, and then the levels and ``ofi_levels`` are null.
``diffs``: diffs applied during the second; ``ofi_levels``: the second's order-flow imbalance of book levels
1..``OFI_LEVELS`` (docs/book.md), summed over those diffs."""

BOOK_CHECKPOINT = pa.schema(
    [
        pa.field("time_ms", pa.int64(), nullable=False),
        pa.field("valid", pa.bool_(), nullable=False),
        pa.field("last_update_id", pa.int64()),
        pa.field("last_event_time_ms", pa.int64()),
        pa.field("bids", LEVELS),
        pa.field("asks", LEVELS),
    ]
)
"""``book_checkpoint``: the whole book at every minute end of the UTC day (1,440 rows, the last at the next midnight):
the state after every diff with event time before ``time_ms``, best first. A replay starts from a valid row and applies
the diffs with ``final_update_id > last_update_id``. Levels are null when ``valid`` is false."""

BOOK_KINDS: dict[str, pa.Schema] = {
    "book_validity": BOOK_VALIDITY,
    "book_1s": BOOK_1S,
    "book_checkpoint": BOOK_CHECKPOINT,
}
"""The kinds one book day writes (``harvest_pipeline.book``), one file each: ``kind=K/K.parquet``."""

RAW_KINDS: dict[str, pa.Schema] = {
    "prices": PRICES,
    "orderbook": ORDERBOOK,
    "bookticker": BOOKTICKER,
    "depth_snapshot": DEPTH_SNAPSHOT,
    "trades": TRADES,
    "mark_price": MARK_PRICE,
    "liquidations": LIQUIDATIONS,
    "klines": KLINES,
    "open_interest": OPEN_INTEREST,
    "events": EVENTS,
}
"""Every kind compaction writes, by the ``kind=`` value of its folder."""

ALL_SYMBOLS = "ALL"

FEATURES_1S = pa.schema(
    [
        pa.field("time_ms", pa.int64(), nullable=False),
        pa.field("second_of_day", pa.int32(), nullable=False),
        pa.field("open", pa.float64()),
        pa.field("high", pa.float64()),
        pa.field("low", pa.float64()),
        pa.field("close", pa.float64()),
        pa.field("volume", pa.float64(), nullable=False),
        pa.field("quote_volume", pa.float64(), nullable=False),
        pa.field("vwap", pa.float64()),
        pa.field("trade_count", pa.int64(), nullable=False),
        pa.field("buy_volume", pa.float64(), nullable=False),
        pa.field("sell_volume", pa.float64(), nullable=False),
        pa.field("delta", pa.float64(), nullable=False),
        pa.field("cvd", pa.float64(), nullable=False),
        pa.field("best_bid", pa.float64()),
        pa.field("best_ask", pa.float64()),
        pa.field("bid_size", pa.float64()),
        pa.field("ask_size", pa.float64()),
        pa.field("mid", pa.float64()),
        pa.field("spread_bps", pa.float64()),
        pa.field("microprice", pa.float64()),
        pa.field("imbalance_l1", pa.float64()),
        pa.field("depth_imbalance_l5", pa.float64()),
        pa.field("depth_imbalance_l20", pa.float64()),
        pa.field("book_updates", pa.int64(), nullable=False),
        pa.field("ofi", pa.float64(), nullable=False),
        pa.field("ofi_l5", pa.float64()),
        pa.field("ofi_z", pa.float64()),
        pa.field("cvd_z", pa.float64()),
        pa.field("fusion", pa.float64()),
        pa.field("fusion_signal", pa.int8()),
        pa.field("trades_per_s_trailing", pa.float64(), nullable=False),
        pa.field("realized_vol_trailing", pa.float64()),
        pa.field("session", pa.string(), nullable=False),
        pa.field("regime", pa.string(), nullable=False),
        pa.field("vol_bucket", pa.string()),
        pa.field("scenario_2x2", pa.string()),
        pa.field("fee_tier", pa.string(), nullable=False),
        pa.field("is_empty", pa.bool_(), nullable=False),
        pa.field("book_stale", pa.bool_(), nullable=False),
        pa.field("l1_source", pa.string(), nullable=False),
        pa.field("latency_ms_p50", pa.float64()),
        pa.field("latency_ms_p99", pa.float64()),
        pa.field("gap", pa.bool_(), nullable=False),
        pa.field("recorded", pa.bool_(), nullable=False),
        pa.field("mark_price", pa.float64()),
        pa.field("index_price", pa.float64()),
        pa.field("basis_bps", pa.float64()),
        pa.field("funding_rate", pa.float64()),
        pa.field("liquidation_buy_volume", pa.float64(), nullable=False),
        pa.field("liquidation_sell_volume", pa.float64(), nullable=False),
        pa.field("open_interest", pa.float64()),
        pa.field("open_interest_age_s", pa.float64()),
    ]
)
"""``features_1s``: one row per UTC second of the day (86,400 rows per date x symbol), defined in docs/features.md.

Floats only (exact decimal sums are cast to DOUBLE at the end); nulls mean "not defined yet" (no trade or book update
so far today, z-score warm-up), "not recorded" (``recorded = false``: no collector was recording that second, so
nothing is carried into it) or "book unknown" (``ofi_l5``, ``depth_imbalance_*`` and book-sourced L1: the
reconstructed book ``book_1s`` is absent or not valid at that second); empty recorded seconds are rows with
``is_empty = true``. ``l1_source`` (``bookticker``, ``book`` or ``none``) says where the day's L1 columns came from.
"""

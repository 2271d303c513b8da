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
        *PROVENANCE,
    ]
)
"""``prices``: one row per aggTrade. ``is_buyer_maker`` true means the taker sold. latency = recv - E."""

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

RAW_KINDS: dict[str, pa.Schema] = {
    "prices": PRICES,
    "orderbook": ORDERBOOK,
    "bookticker": BOOKTICKER,
    "depth_snapshot": DEPTH_SNAPSHOT,
    "events": EVENTS,
}
"""Every kind compaction writes, by the ``kind=`` value of its folder."""

ALL_SYMBOLS = "ALL"

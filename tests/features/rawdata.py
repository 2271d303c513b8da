"""Tiny raw Parquet part files for feature tests, written with the real schemas the compaction stage uses."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harvest_pipeline.features.sources import BOOK_KIND, day_start_ms
from harvest_pipeline.schema import (
    BOOK_1S,
    BOOKTICKER,
    EVENTS,
    LIQUIDATIONS,
    MARK_PRICE,
    OFI_LEVELS,
    OPEN_INTEREST,
    PRICES,
)
from harvest_pipeline.store import kind_dir

DAY = dt.date(2026, 1, 5)
SYMBOL = "BTCUSDT"
T0 = day_start_ms(DAY)


def write_raw(root: Path, day: dt.date, symbol: str, kind: str, part: str, columns: dict, schema: pa.Schema) -> Path:
    """One Parquet part of ``kind`` from ``columns`` plus provenance (receive time = event time + latency)."""
    n = len(next(iter(columns.values())))
    latency = columns.pop("latency_ms", [5] * n)
    provenance = {
        "recv_time_ns": [(e + lat) * 1_000_000 for e, lat in zip(columns["event_time_ms"], latency, strict=True)],
        "conn_id": columns.pop("conn_id", ["c1"] * n),
        "segment": [part] * n,
        "line": list(range(n)),
    }
    if "latency_ms" in schema.names:
        columns["latency_ms"] = latency
    table = pa.table({**columns, **provenance}, schema=schema)
    directory = kind_dir(root, day, symbol, kind)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{part}.parquet"
    pq.write_table(table, path)
    return path


def write_trades(
    root: Path, trades: list[tuple], part: str = "part-a", day: dt.date = DAY, symbol: str = SYMBOL
) -> Path:
    """Trades as (event_time_ms, agg_trade_id, price, qty, is_buyer_maker[, latency_ms[, trade_time_ms[, source]]]);
    prices and quantities as strings, source ``ws`` unless given; the trade time T defaults to the event time E, the
    receive time is E + latency."""
    columns = {
        "event_time_ms": [t[0] for t in trades],
        "trade_time_ms": [t[6] if len(t) > 6 else t[0] for t in trades],
        "agg_trade_id": [t[1] for t in trades],
        "first_trade_id": [t[1] for t in trades],
        "last_trade_id": [t[1] for t in trades],
        "price": [Decimal(t[2]) for t in trades],
        "qty": [Decimal(t[3]) for t in trades],
        "is_buyer_maker": [t[4] for t in trades],
        "latency_ms": [t[5] if len(t) > 5 else 5 for t in trades],
        "source": [t[7] if len(t) > 7 else "ws" for t in trades],
    }
    return write_raw(root, day, symbol, "prices", part, columns, PRICES)


def write_ticks(root: Path, ticks: list[tuple], part: str = "part-a", day: dt.date = DAY, symbol: str = SYMBOL) -> Path:
    """L1 updates as (event_time_ms, update_id, bid, bid_qty, ask, ask_qty[, latency_ms])."""
    columns = {
        "event_time_ms": [t[0] for t in ticks],
        "transaction_time_ms": [t[0] for t in ticks],
        "update_id": [t[1] for t in ticks],
        "bid_price": [Decimal(t[2]) for t in ticks],
        "bid_qty": [Decimal(t[3]) for t in ticks],
        "ask_price": [Decimal(t[4]) for t in ticks],
        "ask_qty": [Decimal(t[5]) for t in ticks],
        "latency_ms": [t[6] if len(t) > 6 else 5 for t in ticks],
    }
    return write_raw(root, day, symbol, "bookticker", part, columns, BOOKTICKER)


def write_marks(root: Path, marks: list[tuple], part: str = "part-a", day: dt.date = DAY, symbol: str = SYMBOL) -> Path:
    """Mark price updates as (event_time_ms, mark, index, funding_rate) with decimals as strings."""
    columns = {
        "event_time_ms": [m[0] for m in marks],
        "mark_price": [Decimal(m[1]) for m in marks],
        "index_price": [Decimal(m[2]) for m in marks],
        "estimated_settle_price": [Decimal(m[2]) for m in marks],
        "funding_rate": [Decimal(m[3]) for m in marks],
        "next_funding_time_ms": [(m[0] // 28_800_000 + 1) * 28_800_000 for m in marks],
    }
    return write_raw(root, day, symbol, "mark_price", part, columns, MARK_PRICE)


def write_liquidations(
    root: Path, orders: list[tuple], part: str = "part-a", day: dt.date = DAY, symbol: str = SYMBOL
) -> Path:
    """Liquidations as (event_time_ms, trade_time_ms, side, filled_qty) with the quantity as a string."""
    columns = {
        "event_time_ms": [o[0] for o in orders],
        "trade_time_ms": [o[1] for o in orders],
        "side": [o[2] for o in orders],
        "order_type": ["LIMIT"] * len(orders),
        "time_in_force": ["IOC"] * len(orders),
        "status": ["FILLED"] * len(orders),
        "price": [Decimal("100")] * len(orders),
        "avg_price": [Decimal("100")] * len(orders),
        "orig_qty": [Decimal(o[3]) for o in orders],
        "last_filled_qty": [Decimal(o[3]) for o in orders],
        "filled_qty": [Decimal(o[3]) for o in orders],
    }
    return write_raw(root, day, symbol, "liquidations", part, columns, LIQUIDATIONS)


def write_open_interest(
    root: Path, samples: list[tuple], part: str = "part-a", day: dt.date = DAY, symbol: str = SYMBOL
) -> Path:
    """Open interest answers as (time_ms, open_interest) with the value as a string."""
    columns = {"event_time_ms": [o[0] for o in samples], "open_interest": [Decimal(o[1]) for o in samples]}
    return write_raw(root, day, symbol, "open_interest", part, columns, OPEN_INTEREST)


def write_events(
    root: Path, events: list[dict], part: str = "part-a", day: dt.date = DAY, symbol: str = SYMBOL
) -> Path:
    """Ledger records: dicts with ``event`` and ``event_time_ms`` and optionally the other EVENTS fields and
    ``conn_id`` (default ``c1``); the receive time is the event time (plus the default latency)."""
    optional = ("stream", "reason", "from_id", "to_id", "from_time_ms", "to_time_ms", "count", "detail")
    columns = {
        "event_time_ms": [e["event_time_ms"] for e in events],
        "event": [e["event"] for e in events],
        **{name: [e.get(name) for e in events] for name in optional},
        "conn_id": [e.get("conn_id", "c1") for e in events],
    }
    return write_raw(root, day, symbol, "events", part, columns, EVENTS)


def write_book(root: Path, seconds: dict[int, dict], day: dt.date = DAY, symbol: str = SYMBOL) -> Path:
    """A ``book_1s`` file of 86,400 rows, not valid and without diffs except in ``seconds``: second of day -> dict with
    ``bids`` and ``asks`` as [(price, qty), ...] best first (strings), ``diffs`` (default 1) and ``ofi_levels`` (default
    zeros); ``valid=False`` keeps the row invalid (levels null) with its ``diffs``."""
    start = day_start_ms(day)
    rows = []
    for second in range(86_400):
        given = seconds.get(second, {"valid": False, "diffs": 0})
        valid = given.get("valid", True)
        bids, asks = given.get("bids", []), given.get("asks", [])

        def side(levels: list[tuple[str, str]], item: int, valid: bool = valid) -> list[Decimal] | None:
            return [Decimal(level[item]) for level in levels] if valid else None

        rows.append(
            {
                "time_ms": start + second * 1000,
                "second_of_day": second,
                "valid": valid,
                "last_update_id": 1_000 + second if valid else None,
                "bid_prices": side(bids, 0),
                "bid_qtys": side(bids, 1),
                "ask_prices": side(asks, 0),
                "ask_qtys": side(asks, 1),
                "diffs": given.get("diffs", 1),
                "ofi_levels": [float(v) for v in given.get("ofi_levels", [0.0] * OFI_LEVELS)] if valid else None,
            }
        )
    directory = kind_dir(root, day, symbol, BOOK_KIND)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "book_1s.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=BOOK_1S), path)
    return path

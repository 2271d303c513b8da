"""Raw Parquet files of a day x symbol for completeness tests, with the real schemas (and the old ``prices`` schema
without ``source``). Times follow ids so a test reads them off: trade ``id`` happens ``id`` seconds after midnight
of its day, diff ``u`` ``u`` hundredths of a second after it; websocket rows arrive 5 ms later, REST rows an hour later.
Files are written by ``tests.features.rawdata``'s writer (provenance, receive time = event time + latency), ledger
records with its ``write_events``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from harvest_pipeline.features.sources import day_start_ms
from harvest_pipeline.schema import DEPTH_SNAPSHOT, ORDERBOOK, PRICES
from tests.features.rawdata import DAY, SYMBOL, write_raw

DAY_BEFORE = DAY - dt.timedelta(days=1)
TRADES = "btcusdt@aggTrade"
DEPTH = "btcusdt@depth@100ms"
WS_LATENCY_MS = 5
REST_DELAY_MS = 3_600_000
PRICES_BEFORE_SOURCE = pa.schema([field for field in PRICES if field.name != "source"])
"""``prices`` as compaction wrote it before the ``source`` column existed."""


def trade_ms(trade_id: int, day: dt.date = DAY) -> int:
    """Event (and trade) time of a test trade."""
    return day_start_ms(day) + trade_id * 1000


def trade_recv_ns(trade_id: int, day: dt.date = DAY) -> int:
    """Receive time of a test trade that arrived by websocket."""
    return (trade_ms(trade_id, day) + WS_LATENCY_MS) * 1_000_000


def diff_ms(final_id: int, day: dt.date = DAY) -> int:
    """Event time of a test diff."""
    return day_start_ms(day) + final_id * 10


def diff_recv_ns(final_id: int, day: dt.date = DAY) -> int:
    """Receive time of a test diff."""
    return (diff_ms(final_id, day) + WS_LATENCY_MS) * 1_000_000


def write_prices(
    root: Path, ids: list[int] | range, source: str | None = "ws", part: str = "part-a", day: dt.date = DAY
) -> Path:
    """Trades with these ids, all from ``source`` (``ws`` or ``rest``; None writes the schema without ``source``)."""
    ids = list(ids)
    times = [trade_ms(i, day) for i in ids]
    columns = {
        "event_time_ms": times,
        "trade_time_ms": times,
        "agg_trade_id": ids,
        "first_trade_id": ids,
        "last_trade_id": ids,
        "price": [Decimal("100.5")] * len(ids),
        "qty": [Decimal("0.01")] * len(ids),
        "is_buyer_maker": [i % 2 == 0 for i in ids],
        "latency_ms": [REST_DELAY_MS if source == "rest" else WS_LATENCY_MS] * len(ids),
    }
    if source is None:
        return write_raw(root, day, SYMBOL, "prices", part, columns, PRICES_BEFORE_SOURCE)
    return write_raw(root, day, SYMBOL, "prices", part, {**columns, "source": [source] * len(ids)}, PRICES)


def write_diffs(
    root: Path,
    diffs: list[tuple[int, int, int]],
    part: str = "part-a",
    day: dt.date = DAY,
    bids: list[list[dict]] | None = None,
) -> Path:
    """Depth diffs as (U, u, pu), with no ask and no bid level unless ``bids`` gives each diff's bid levels."""
    times = [diff_ms(u, day) for _, u, _ in diffs]
    columns = {
        "event_time_ms": times,
        "transaction_time_ms": times,
        "first_update_id": [d[0] for d in diffs],
        "final_update_id": [d[1] for d in diffs],
        "prev_final_update_id": [d[2] for d in diffs],
        "bids": bids or [[] for _ in diffs],
        "asks": [[] for _ in diffs],
        "latency_ms": [WS_LATENCY_MS] * len(diffs),
    }
    return write_raw(root, day, SYMBOL, "orderbook", part, columns, ORDERBOOK)


def chain(first_u: int, last_u: int, pu: int | None = None, step: int = 10) -> list[tuple[int, int, int]]:
    """Diffs (U, u, pu) with u = first_u, first_u + step, .. last_u (100 ms apart), each holding ``step`` updates
    (U = u - step + 1) and linked pu = previous u; the first claims ``pu`` (default: its own u - step)."""
    diffs = [(u - step + 1, u, u - step) for u in range(first_u, last_u + 1, step)]
    if pu is not None:
        diffs[0] = (diffs[0][0], diffs[0][1], pu)
    return diffs


def write_snapshots(root: Path, last_update_ids: list[int], part: str = "part-a", day: dt.date = DAY) -> Path:
    """REST depth snapshots with these ``lastUpdateId`` values (taken at the time of that ``u``)."""
    times = [diff_ms(i, day) for i in last_update_ids]
    columns = {
        "event_time_ms": times,
        "transaction_time_ms": times,
        "last_update_id": last_update_ids,
        "bids": [[] for _ in times],
        "asks": [[] for _ in times],
    }
    return write_raw(root, day, SYMBOL, "depth_snapshot", part, columns, DEPTH_SNAPSHOT)

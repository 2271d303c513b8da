"""One page of ``GET <aggTrades path>?symbol=&fromId=&limit=1000``: the request, and the answer read into trades.

The path is the market's (``Market.rest_path("aggTrades")``: ``/fapi/v1/aggTrades`` on USDⓈ-M, the default,
``/dapi/v1/aggTrades`` on COIN-M, ``/api/v3/aggTrades`` on spot); the answers have the same shape on all three.

A trade is stored re-serialised by orjson (the same keys and values; prices stay strings), one record each, and only
when its record is built: orjson's output buffers are over-allocated (~2 KiB for a 90-byte trade), so keeping a
page of them would cost 20 times its size."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from harvest_pipeline.backfill.holes import AGG_TRADES_PAGE
from harvest_pipeline.collector.connection import parse_retry_after
from harvest_pipeline.collector.sequencing import MAX_ID
from harvest_pipeline.markets import USDM

AGG_TRADES_PATH = USDM.rest_path("aggTrades")
"""USDⓈ-M's aggTrades path, the default of ``fetch_page``."""


@dataclass(frozen=True)
class PageAnswer:
    """What came back for one request: status (None when no answer arrived), body, the rate-limit headers, and the
    trades when the body is a readable aggTrades answer (else ``problem`` says why not)."""

    from_id: int
    requested_ns: int
    received_ns: int
    status: int | None
    body: bytes
    retry_after_s: float | None
    used_weight: int | None
    trades: list[tuple[int, dict[str, Any]]] | None
    """``(agg_trade_id, trade object)`` in answer order."""
    problem: str | None


def read_trades(body: bytes) -> tuple[list[tuple[int, dict[str, Any]]] | None, str | None]:
    """The trades of an aggTrades answer as ``(id, object)``, or None and why the body is not one."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc}"
    if not isinstance(parsed, list):
        return None, f"not a JSON array but {type(parsed).__name__}"
    trades = []
    for index, trade in enumerate(parsed):
        trade_id = trade.get("a") if isinstance(trade, dict) else None
        if not isinstance(trade_id, int) or isinstance(trade_id, bool) or not 0 <= trade_id <= MAX_ID:
            return None, f"trade {index} has no aggregate trade id 'a' in 0..2^63-1"
        trades.append((trade_id, trade))
    return trades, None


async def fetch_page(
    session: aiohttp.ClientSession,
    rest_base: str,
    symbol: str,
    from_id: int,
    clock: Callable[[], int],
    path: str = AGG_TRADES_PATH,
) -> PageAnswer:
    """Request the page of ``symbol`` starting at ``from_id`` from ``rest_base`` + ``path`` (the market's aggTrades
    path); never raises for a network or HTTP problem."""
    url = f"{rest_base.rstrip('/')}{path}"
    params = {"symbol": symbol, "fromId": str(from_id), "limit": str(AGG_TRADES_PAGE)}
    requested_ns = clock()
    try:
        async with session.get(url, params=params) as response:
            body = await response.read()
            status = response.status
            used = response.headers.get("X-MBX-USED-WEIGHT-1M")
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
    except (aiohttp.ClientError, TimeoutError) as exc:
        return PageAnswer(from_id, requested_ns, clock(), None, b"", None, None, None, f"{type(exc).__name__}: {exc}")
    used_weight = int(used) if used is not None and used.isdigit() else None
    trades, problem = read_trades(body) if status == 200 else (None, f"HTTP {status}: {body[:200]!r}")
    return PageAnswer(from_id, requested_ns, clock(), status, body, retry_after, used_weight, trades, problem)

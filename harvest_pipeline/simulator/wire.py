"""Binance USD-M wire formats: stream names and routes, and the exact bytes of every message the simulator sends.

Pure byte formatting (no JSON library on the hot path). Field order, names and types follow what Binance sends: prices
and quantities are decimal strings with the tick/step size's decimals, times are integer milliseconds.
"""

from __future__ import annotations

from typing import Any

import orjson

from harvest_pipeline.simulator.instruments import Instrument
from harvest_pipeline.simulator.market import DepthDiff, Top, Trade

PUBLIC = "public"
MARKET = "market"
ROUTES = (PUBLIC, MARKET)

AGG_TRADE = "aggTrade"
DEPTH_DIFF = "depth@100ms"
DEPTH_PARTIAL = "depth20@100ms"
BOOK_TICKER = "bookTicker"
STREAM_KINDS = (AGG_TRADE, DEPTH_DIFF, DEPTH_PARTIAL, BOOK_TICKER)
PARTIAL_DEPTH_LEVELS = 20

_MARKET_STREAM_PREFIXES = ("aggTrade", "trade", "markPrice", "kline_", "forceOrder", "continuousKline", "miniTicker")


def stream_name(symbol: str, kind: str) -> str:
    """``stream_name("BTCUSDT", "aggTrade") == "btcusdt@aggTrade"``."""
    return f"{symbol.lower()}@{kind}"


def route_of(stream: str) -> str:
    """The route (``public`` or ``market``) on which Binance delivers ``stream``; anything unknown counts as public."""
    kind = stream.partition("@")[2]
    return MARKET if kind.startswith(_MARKET_STREAM_PREFIXES) else PUBLIC


def combined_prefix(stream: str) -> bytes:
    """The bytes before the payload in a combined-stream frame (the payload and ``b"}"`` follow)."""
    return b'{"stream":"%b","data":' % stream.encode()


def agg_trade(spec: Instrument, trade: Trade, event_ms: int, trade_ms: int) -> bytes:
    """An ``aggTrade`` event."""
    return (
        f'{{"e":"aggTrade","E":{event_ms},"a":{trade.agg_id},"s":"{spec.symbol}","p":"{spec.price(trade.price_ticks)}",'
        f'"q":"{spec.qty(trade.lots)}","f":{trade.first_trade_id},"l":{trade.last_trade_id},"T":{trade_ms},'
        f'"m":{"true" if trade.buyer_is_maker else "false"}}}'
    ).encode()


def book_ticker(spec: Instrument, top: Top, event_ms: int) -> bytes:
    """A ``bookTicker`` event."""
    return (
        f'{{"e":"bookTicker","u":{top.update_id},"E":{event_ms},"T":{event_ms},"s":"{spec.symbol}",'
        f'"b":"{spec.price(top.bid_ticks)}","B":"{spec.qty(top.bid_lots)}",'
        f'"a":"{spec.price(top.ask_ticks)}","A":"{spec.qty(top.ask_lots)}"}}'
    ).encode()


def _levels(spec: Instrument, levels: list[tuple[int, int]]) -> str:
    return ",".join(f'["{spec.price(tick)}","{spec.qty(lots)}"]' for tick, lots in levels)


def depth_update(
    spec: Instrument, diff: DepthDiff, event_ms: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]]
) -> bytes:
    """A ``depthUpdate`` event with ``U``/``u``/``pu`` from ``diff`` and the given levels (the diff's own levels for
    ``@depth@100ms``, the top 20 for ``@depth20@100ms``)."""
    return (
        f'{{"e":"depthUpdate","E":{event_ms},"T":{event_ms},"s":"{spec.symbol}","U":{diff.first_update_id},'
        f'"u":{diff.last_update_id},"pu":{diff.previous_update_id},'
        f'"b":[{_levels(spec, bids)}],"a":[{_levels(spec, asks)}]}}'
    ).encode()


def depth_snapshot(
    spec: Instrument, last_update_id: int, now_ms: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]]
) -> bytes:
    """The body of ``GET /fapi/v1/depth``."""
    return (
        f'{{"lastUpdateId":{last_update_id},"E":{now_ms},"T":{now_ms},'
        f'"bids":[{_levels(spec, bids)}],"asks":[{_levels(spec, asks)}]}}'
    ).encode()


def rest_agg_trades(spec: Instrument, trades: list[tuple[int, int, Trade]]) -> bytes:
    """The body of ``GET /fapi/v1/aggTrades`` for ``(agg_id, trade_ms, trade)`` entries."""
    return orjson.dumps(
        [
            {
                "a": trade.agg_id,
                "p": spec.price(trade.price_ticks),
                "q": spec.qty(trade.lots),
                "f": trade.first_trade_id,
                "l": trade.last_trade_id,
                "T": trade_ms,
                "m": trade.buyer_is_maker,
            }
            for _, trade_ms, trade in trades
        ]
    )


def exchange_info(specs: list[Instrument], weight_limit: int, now_ms: int) -> bytes:
    """The body of ``GET /fapi/v1/exchangeInfo`` (the fields clients read: rate limits, sizes, precisions)."""
    symbols: list[dict[str, Any]] = [
        {
            "symbol": spec.symbol,
            "pair": spec.symbol,
            "contractType": "PERPETUAL",
            "status": "TRADING",
            "baseAsset": spec.base_asset,
            "quoteAsset": "USDT",
            "marginAsset": "USDT",
            "pricePrecision": spec.price_decimals,
            "quantityPrecision": spec.qty_decimals,
            "filters": [
                {"filterType": "PRICE_FILTER", "tickSize": spec.tick_size, "minPrice": spec.tick_size},
                {"filterType": "LOT_SIZE", "stepSize": spec.step_size, "minQty": spec.step_size},
            ],
        }
        for spec in specs
    ]
    return orjson.dumps(
        {
            "timezone": "UTC",
            "serverTime": now_ms,
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight_limit}
            ],
            "symbols": symbols,
        }
    )


def control_reply(request_id: Any, result: Any = None) -> bytes:
    """The answer to a SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS frame."""
    return orjson.dumps({"result": result, "id": request_id})


def control_error(request_id: Any, message: str) -> bytes:
    """The answer to an invalid control frame (Binance's error shape)."""
    return orjson.dumps({"error": {"code": 2, "msg": message}, "id": request_id})


def rest_error(code: int, message: str) -> bytes:
    """A Binance REST error body."""
    return orjson.dumps({"code": code, "msg": message})

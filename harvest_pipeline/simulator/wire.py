"""Binance USDⓈ-M wire formats: stream names and routes, and the exact bytes of every message the simulator sends.

COIN-M frames are these with the pair ``ps`` after the symbol where Binance prints it (``Instrument.pair_field``, empty
on USDⓈ-M); what else differs per market is in ``wire_coinm``, ``wire_spot`` and ``dialects``. Pure byte formatting (no
JSON library on the hot path). Field order, names and types follow what Binance sends: prices and quantities are
decimal strings with the tick/step size's decimals, times are integer milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from harvest_pipeline.simulator.derivatives import INTEREST_RATE_E8, MarkPrice, next_funding_ms
from harvest_pipeline.simulator.instruments import Instrument, divide_half_even, format_units
from harvest_pipeline.simulator.klines import DayStats, Kline
from harvest_pipeline.simulator.liquidations import Liquidation
from harvest_pipeline.simulator.market import DepthDiff, Top, Trade, trade_lots
from harvest_pipeline.simulator.trade_history import IndividualTrade

PUBLIC = "public"
MARKET = "market"
PRIVATE = "private"
"""User data, which the simulator does not simulate: handshake and subscriptions, never a frame."""
LEGACY = "legacy"
"""The unrouted ``/ws/...`` and ``/stream?streams=`` on USDⓈ-M: every market stream moved off them on 2026-04-23, so
they acknowledge subscriptions and then send nothing."""
ROUTES = (PUBLIC, MARKET, PRIVATE)
"""The path prefixes of USDⓈ-M's routed websockets; only ``public`` and ``market`` deliver frames (``route_of``)."""
UNROUTED_PATHS = ("ws", "stream")

AGG_TRADE = "aggTrade"
DEPTH_DIFF = "depth@100ms"
DEPTH_1S = "depth"
"""Spot's depth diffs of a whole second."""
DEPTH_PARTIAL = "depth20@100ms"
BOOK_TICKER = "bookTicker"
TRADE = "trade"
MARK_PRICE_1S = "markPrice@1s"
MARK_PRICE_3S = "markPrice"
FORCE_ORDER = "forceOrder"
KLINE_1M = "kline_1m"
STREAM_KINDS = (
    AGG_TRADE,
    DEPTH_DIFF,
    DEPTH_1S,
    DEPTH_PARTIAL,
    BOOK_TICKER,
    TRADE,
    MARK_PRICE_1S,
    MARK_PRICE_3S,
    FORCE_ORDER,
    KLINE_1M,
)
PARTIAL_DEPTH_LEVELS = 20
E8_DECIMALS = 8
"""Mark, index and settle prices and funding rates are printed with 8 decimals."""

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


def individual_trades(spec: Instrument, trade: Trade, event_ms: int, trade_ms: int) -> list[tuple[int, bytes]]:
    """The ``trade`` events of the individual trades an aggregated trade is made of, as ``(trade id, payload)``."""
    head = f'{{"e":"trade","E":{event_ms},"T":{trade_ms},"s":"{spec.symbol}","t":'
    tail = f',"p":"{spec.price(trade.price_ticks)}","q":"'
    side = f'","X":"MARKET","m":{"true" if trade.buyer_is_maker else "false"}}}'
    first = trade.first_trade_id
    lots = trade_lots(trade.lots, trade.last_trade_id - first + 1)
    return [(first + i, f"{head}{first + i}{tail}{spec.qty(size)}{side}".encode()) for i, size in enumerate(lots)]


def mark_price_update(spec: Instrument, mark: MarkPrice, event_ms: int) -> bytes:
    """A ``markPriceUpdate`` event (``@markPrice@1s`` and ``@markPrice``)."""
    return (
        f'{{"e":"markPriceUpdate","E":{event_ms},"s":"{spec.symbol}","p":"{_e8(mark.mark_e8)}",'
        f'"i":"{_e8(mark.index_e8)}","P":"{_e8(mark.settle_e8)}","r":"{_e8(mark.funding_rate_e8)}",'
        f'"T":{next_funding_ms(event_ms)}}}'
    ).encode()


def force_order(spec: Instrument, liquidation: Liquidation, event_ms: int) -> bytes:
    """A ``forceOrder`` event (a liquidation order, fully filled)."""
    lots = spec.qty(liquidation.lots)
    side = "SELL" if liquidation.taker_sold else "BUY"
    return (
        f'{{"e":"forceOrder","E":{event_ms},"o":{{"s":"{spec.symbol}"{spec.pair_field},"S":"{side}",'
        f'"o":"LIMIT","f":"IOC","q":"{lots}","p":"{spec.price(liquidation.order_ticks)}",'
        f'"ap":"{_average_price(spec, liquidation.tick_lots, liquidation.lots)}","X":"FILLED",'
        f'"l":"{spec.qty(liquidation.last_lots)}","z":"{lots}","T":{liquidation.trade_ms}}}}}'
    ).encode()


def kline(spec: Instrument, kline: Kline, event_ms: int, closed: bool) -> bytes:
    """A ``kline`` event of the 1-minute kline ``kline``; ``closed`` is its ``x``. A zero volume prints as ``"0"``."""
    quote, taker_quote = _volume(spec.quote, kline.tick_lots), _volume(spec.quote, kline.taker_buy_tick_lots)
    return kline_with_volumes(spec, kline, event_ms, closed, quote, taker_quote)


def kline_with_volumes(spec: Instrument, kline: Kline, event_ms: int, closed: bool, q: str, taker_q: str) -> bytes:
    """A ``kline`` event whose second volume ``q`` (and its taker-buy part ``Q``) are given as printed."""
    return (
        f'{{"e":"kline","E":{event_ms},"s":"{spec.symbol}","k":{{"t":{kline.open_ms},"T":{kline.close_ms},'
        f'"s":"{spec.symbol}","i":"1m","f":{kline.first_id},"L":{kline.last_id},"o":"{spec.price(kline.open)}",'
        f'"c":"{spec.price(kline.close)}","h":"{spec.price(kline.high)}","l":"{spec.price(kline.low)}",'
        f'"v":"{_volume(spec.qty, kline.lots)}","n":{kline.count},"x":{"true" if closed else "false"},'
        f'"q":"{q}","V":"{_volume(spec.qty, kline.taker_buy_lots)}","Q":"{taker_q}","B":"0"}}}}'
    ).encode()


def _volume(format_volume: Callable[[int], str], amount: int) -> str:
    return format_volume(amount) if amount else "0"


def book_ticker(spec: Instrument, top: Top, event_ms: int, transaction_ms: int) -> bytes:
    """A ``bookTicker`` event."""
    return (
        f'{{"e":"bookTicker","u":{top.update_id},"E":{event_ms},"T":{transaction_ms},"s":"{spec.symbol}"'
        f"{spec.pair_field},"
        f'"b":"{spec.price(top.bid_ticks)}","B":"{spec.qty(top.bid_lots)}",'
        f'"a":"{spec.price(top.ask_ticks)}","A":"{spec.qty(top.ask_lots)}"}}'
    ).encode()


def levels_text(spec: Instrument, levels: list[tuple[int, int]]) -> str:
    """The JSON text of ``[[price, qty], ...]`` levels, without the brackets around the list."""
    return ",".join(f'["{spec.price(tick)}","{spec.qty(lots)}"]' for tick, lots in levels)


def depth_update(
    spec: Instrument,
    diff: DepthDiff,
    event_ms: int,
    transaction_ms: int,
    bids: list[tuple[int, int]],
    asks: list[tuple[int, int]],
) -> bytes:
    """A ``depthUpdate`` event with ``U``/``u``/``pu`` from ``diff`` and the given levels (the diff's own levels for
    ``@depth@100ms``, the top 20 for ``@depth20@100ms``)."""
    return (
        f'{{"e":"depthUpdate","E":{event_ms},"T":{transaction_ms},"s":"{spec.symbol}"{spec.pair_field},'
        f'"U":{diff.first_update_id},'
        f'"u":{diff.last_update_id},"pu":{diff.previous_update_id},'
        f'"b":[{levels_text(spec, bids)}],"a":[{levels_text(spec, asks)}]}}'
    ).encode()


def depth_snapshot(
    spec: Instrument, last_update_id: int, now_ms: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]]
) -> bytes:
    """The body of ``GET /fapi/v1/depth``."""
    return (
        f'{{"lastUpdateId":{last_update_id},"E":{now_ms},"T":{now_ms},'
        f'"bids":[{levels_text(spec, bids)}],"asks":[{levels_text(spec, asks)}]}}'
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


def trade_row(spec: Instrument, trade: IndividualTrade) -> dict[str, Any]:
    """One row of ``GET /fapi/v1/trades`` and ``/historicalTrades``: an individual trade, as ``@trade`` has it."""
    return {
        "id": trade.trade_id,
        "price": spec.price(trade.price_ticks),
        "qty": spec.qty(trade.lots),
        "quoteQty": spec.quote(trade.price_ticks * trade.lots),
        "time": trade.trade_ms,
        "isBuyerMaker": trade.buyer_is_maker,
    }


def book_ticker_row(spec: Instrument, top: Top, now_ms: int) -> dict[str, Any]:
    """One symbol's ``GET /fapi/v1/ticker/bookTicker`` answer: the best levels the ``@bookTicker`` stream last sent."""
    return {
        "symbol": spec.symbol,
        "bidPrice": spec.price(top.bid_ticks),
        "bidQty": spec.qty(top.bid_lots),
        "askPrice": spec.price(top.ask_ticks),
        "askQty": spec.qty(top.ask_lots),
        "time": now_ms,
        "lastUpdateId": top.update_id,
    }


def kline_row(spec: Instrument, kline: Kline) -> list[Any]:
    """One row of ``GET /fapi/v1/klines``, with the values the ``@kline_1m`` stream prints."""
    quote, taker_quote = _volume(spec.quote, kline.tick_lots), _volume(spec.quote, kline.taker_buy_tick_lots)
    return kline_row_with_volumes(spec, kline, quote, taker_quote)


def kline_row_with_volumes(spec: Instrument, kline: Kline, q: str, taker_q: str) -> list[Any]:
    """A klines row whose second volume ``q`` (and its taker-buy part) are given as printed."""
    return [
        kline.open_ms,
        spec.price(kline.open),
        spec.price(kline.high),
        spec.price(kline.low),
        spec.price(kline.close),
        _volume(spec.qty, kline.lots),
        kline.close_ms,
        q,
        kline.count,
        _volume(spec.qty, kline.taker_buy_lots),
        taker_q,
        "0",
    ]


def open_interest_row(spec: Instrument, lots: int, now_ms: int) -> dict[str, Any]:
    """The body of ``GET /fapi/v1/openInterest``."""
    return {"symbol": spec.symbol, "openInterest": spec.qty(lots), "time": now_ms}


def ticker_24hr_row(spec: Instrument, day: DayStats, now_ms: int) -> dict[str, Any]:
    """One symbol's ``GET /fapi/v1/ticker/24hr`` statistics."""
    change = day.last - day.open
    percent = divide_half_even(change * 100_000, day.open) if day.open else 0
    return {
        "symbol": spec.symbol,
        "priceChange": spec.price(change),
        "priceChangePercent": format_units(percent, 3),
        "weightedAvgPrice": _average_price(spec, day.tick_lots, day.lots),
        "lastPrice": spec.price(day.last),
        "lastQty": spec.qty(day.last_lots),
        "openPrice": spec.price(day.open),
        "highPrice": spec.price(day.high),
        "lowPrice": spec.price(day.low),
        "volume": spec.qty(day.lots),
        "quoteVolume": spec.quote(day.tick_lots),
        "openTime": day.open_ms,
        "closeTime": now_ms,
        "firstId": day.first_id,
        "lastId": day.last_id,
        "count": day.trade_count,
    }


def premium_index_row(spec: Instrument, mark: MarkPrice) -> dict[str, Any]:
    """One symbol's ``GET /fapi/v1/premiumIndex`` answer (the mark price model's latest values)."""
    return {
        "symbol": spec.symbol,
        "markPrice": _e8(mark.mark_e8),
        "indexPrice": _e8(mark.index_e8),
        "estimatedSettlePrice": _e8(mark.settle_e8),
        "lastFundingRate": _e8(mark.funding_rate_e8),
        "interestRate": _e8(INTEREST_RATE_E8),
        "nextFundingTime": next_funding_ms(mark.time_ms),
        "time": mark.time_ms,
    }


def rest_rows(rows: list[Any], as_list: bool) -> bytes:
    """A REST body of per-symbol rows: a JSON list, or the only row itself (when a ``symbol`` was asked for)."""
    return orjson.dumps(rows if as_list else rows[0])


def _e8(units: int) -> str:
    return format_units(units, E8_DECIMALS)


def _average_price(spec: Instrument, tick_lots: int, lots: int) -> str:
    """``tick_lots / lots`` as a price with the instrument's decimals (halves to even); zero without lots."""
    if not lots:
        return spec.price(0)
    return format_units(divide_half_even(tick_lots * spec.tick_units, lots), spec.price_decimals)


def control_reply(request_id: Any, result: Any = None) -> bytes:
    """The answer to a SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS frame."""
    return orjson.dumps({"result": result, "id": request_id})


def control_error(request_id: Any, message: str) -> bytes:
    """The answer to an invalid control frame (Binance's error shape)."""
    return orjson.dumps({"error": {"code": 2, "msg": message}, "id": request_id})


def rest_error(code: int, message: str) -> bytes:
    """A Binance REST error body."""
    return orjson.dumps({"code": code, "msg": message})

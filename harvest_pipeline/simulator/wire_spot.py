"""Spot wire formats, where they differ from USDⓈ-M's (``wire``).

Trades carry Binance's "best match" flag ``M`` (always true) and no ``X``; depth diffs have no transaction time ``T``
and no ``pu`` (a diff continues the chain when its ``U`` is the previous ``u`` + 1); bookTicker has no event type and
no times; the REST depth snapshot and the partial book streams are ``{"lastUpdateId","bids","asks"}``; REST
``ticker/bookTicker`` has neither time nor update id and trades say ``isBestMatch`` (exchangeInfo is in
``exchange_info``). Klines and 24 h statistics are USDⓈ-M's. Pure byte formatting, like ``wire``.
"""

from __future__ import annotations

from typing import Any

import orjson

from harvest_pipeline.simulator import wire
from harvest_pipeline.simulator.instruments import Instrument
from harvest_pipeline.simulator.market import DepthDiff, Top, Trade, trade_lots
from harvest_pipeline.simulator.trade_history import IndividualTrade


def agg_trade(spec: Instrument, trade: Trade, event_ms: int, trade_ms: int) -> bytes:
    """An ``aggTrade`` event."""
    return (
        f'{{"e":"aggTrade","E":{event_ms},"s":"{spec.symbol}","a":{trade.agg_id},"p":"{spec.price(trade.price_ticks)}",'
        f'"q":"{spec.qty(trade.lots)}","f":{trade.first_trade_id},"l":{trade.last_trade_id},"T":{trade_ms},'
        f'"m":{"true" if trade.buyer_is_maker else "false"},"M":true}}'
    ).encode()


def individual_trades(spec: Instrument, trade: Trade, event_ms: int, trade_ms: int) -> list[tuple[int, bytes]]:
    """The ``trade`` events of the individual trades an aggregated trade is made of, as ``(trade id, payload)``."""
    head = f'{{"e":"trade","E":{event_ms},"s":"{spec.symbol}","t":'
    tail = f',"p":"{spec.price(trade.price_ticks)}","q":"'
    side = f'","T":{trade_ms},"m":{"true" if trade.buyer_is_maker else "false"},"M":true}}'
    first = trade.first_trade_id
    lots = trade_lots(trade.lots, trade.last_trade_id - first + 1)
    return [(first + i, f"{head}{first + i}{tail}{spec.qty(size)}{side}".encode()) for i, size in enumerate(lots)]


def book_ticker(spec: Instrument, top: Top, event_ms: int, transaction_ms: int) -> bytes:
    """A ``bookTicker`` event (no event type, no times: ``event_ms`` and ``transaction_ms`` are not printed)."""
    return (
        f'{{"u":{top.update_id},"s":"{spec.symbol}","b":"{spec.price(top.bid_ticks)}","B":"{spec.qty(top.bid_lots)}",'
        f'"a":"{spec.price(top.ask_ticks)}","A":"{spec.qty(top.ask_lots)}"}}'
    ).encode()


def depth_update(
    spec: Instrument,
    diff: DepthDiff,
    event_ms: int,
    transaction_ms: int,
    bids: list[tuple[int, int]],
    asks: list[tuple[int, int]],
) -> bytes:
    """A ``depthUpdate`` event with ``U``/``u`` from ``diff`` and the given levels (no ``T``: ``transaction_ms`` is
    not printed)."""
    return (
        f'{{"e":"depthUpdate","E":{event_ms},"s":"{spec.symbol}","U":{diff.first_update_id},'
        f'"u":{diff.last_update_id},"b":[{wire.levels_text(spec, bids)}],"a":[{wire.levels_text(spec, asks)}]}}'
    ).encode()


def depth_snapshot(
    spec: Instrument, last_update_id: int, now_ms: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]]
) -> bytes:
    """The body of ``GET /api/v3/depth`` (no times: ``now_ms`` is not printed)."""
    return (
        f'{{"lastUpdateId":{last_update_id},'
        f'"bids":[{wire.levels_text(spec, bids)}],"asks":[{wire.levels_text(spec, asks)}]}}'
    ).encode()


def partial_book(
    spec: Instrument,
    diff: DepthDiff,
    event_ms: int,
    transaction_ms: int,
    bids: list[tuple[int, int]],
    asks: list[tuple[int, int]],
) -> bytes:
    """A ``@depth20@100ms`` event: the top levels after ``diff``, shaped like the REST snapshot."""
    return depth_snapshot(spec, diff.last_update_id, event_ms, bids, asks)


def rest_agg_trades(spec: Instrument, trades: list[tuple[int, int, Trade]]) -> bytes:
    """The body of ``GET /api/v3/aggTrades`` for ``(agg_id, trade_ms, trade)`` entries."""
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
                "M": True,
            }
            for _, trade_ms, trade in trades
        ]
    )


def trade_row(spec: Instrument, trade: IndividualTrade) -> dict[str, Any]:
    """One row of ``GET /api/v3/trades`` and ``/historicalTrades``: USDⓈ-M's with ``isBestMatch``."""
    return {**wire.trade_row(spec, trade), "isBestMatch": True}


def book_ticker_row(spec: Instrument, top: Top, now_ms: int) -> dict[str, Any]:
    """One symbol's ``GET /api/v3/ticker/bookTicker`` answer: USDⓈ-M's without time and update id."""
    row = wire.book_ticker_row(spec, top, now_ms)
    del row["time"], row["lastUpdateId"]
    return row

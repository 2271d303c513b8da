"""What REST answers during a replay: the book and trades as the replayed frames describe them.

A recorded ``snapshot`` record (a REST depth body the collector fetched) resets a symbol's book; every replayed
``@depth@100ms`` diff with a newer ``u`` is applied to it, so ``GET /fapi/v1/depth`` returns a snapshot whose
``lastUpdateId`` fits the diff chain being replayed. Replayed aggTrades are kept (bounded) for
``GET /fapi/v1/aggTrades``.
"""

from __future__ import annotations

from typing import Any

import orjson

from harvest_pipeline.simulator.trade_history import AggTradeQuery, TradeHistory

_TRADE_KEYS = ("a", "p", "q", "f", "l", "T", "m")


class ReplayedBook:
    """One symbol's book rebuilt from a recorded snapshot and the diffs replayed after it (prices as strings)."""

    def __init__(self) -> None:
        self.last_update_id: int | None = None
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}

    def reset(self, snapshot: dict[str, Any]) -> None:
        """Start again from a REST depth body."""
        self.last_update_id = snapshot["lastUpdateId"]
        self.bids = {price: qty for price, qty in snapshot["bids"]}
        self.asks = {price: qty for price, qty in snapshot["asks"]}

    def apply(self, diff: dict[str, Any]) -> None:
        """Apply a depth diff newer than the book (absolute quantities; zero deletes)."""
        if self.last_update_id is None or diff["u"] <= self.last_update_id:
            return
        for side, levels in ((self.bids, diff["b"]), (self.asks, diff["a"])):
            for price, qty in levels:
                if float(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last_update_id = diff["u"]

    def body(self, limit: int, now_ms: int) -> bytes:
        """A REST depth body with the best ``limit`` levels per side."""
        bids = sorted(self.bids.items(), key=lambda level: -float(level[0]))[:limit]
        asks = sorted(self.asks.items(), key=lambda level: float(level[0]))[:limit]
        return orjson.dumps({"lastUpdateId": self.last_update_id, "E": now_ms, "T": now_ms, "bids": bids, "asks": asks})


class ReplayedMarket:
    """Books and recent trades per symbol, fed by the replay as it publishes."""

    def __init__(self, trade_history: int):
        self.books: dict[str, ReplayedBook] = {}
        self.trades: dict[str, TradeHistory[dict[str, Any]]] = {}
        self.trade_history = trade_history

    def on_snapshot(self, symbol: str, body: dict[str, Any]) -> None:
        """A recorded REST depth snapshot was reached."""
        self.books.setdefault(symbol.upper(), ReplayedBook()).reset(body)

    def on_frame(self, stream: str, data: Any) -> None:
        """A frame was replayed: diffs update the book, aggTrades join the history."""
        symbol, _, kind = stream.partition("@")
        if not isinstance(data, dict):
            return
        if kind.startswith("depth@"):
            book = self.books.get(symbol.upper())
            if book is not None:
                book.apply(data)
        elif kind == "aggTrade" and isinstance(data.get("a"), int):
            trades = self.trades.setdefault(symbol.upper(), TradeHistory(self.trade_history, horizon_s=None))
            trade = {key: data[key] for key in _TRADE_KEYS if key in data}
            trade_ms = trade.get("T", 0)
            trades.remember([(trade["a"], trade_ms, trade)], trade_ms)

    def depth_body(self, symbol: str, limit: int, now_ms: int) -> bytes:
        """The current replayed book; ``LookupError`` until a snapshot of ``symbol`` has been replayed."""
        book = self.books.get(symbol.upper())
        if book is None:
            raise LookupError(f"no depth snapshot of {symbol.upper()} has been replayed yet")
        return book.body(limit, now_ms)

    def agg_trades_body(self, symbol: str, query: AggTradeQuery, now_ms: int) -> bytes:
        """Replayed trades selected as the live exchange selects them (recorded trade times; no horizon)."""
        trades = self.trades.get(symbol.upper())
        if trades is None:
            raise LookupError(f"no aggTrade of {symbol.upper()} has been replayed yet")
        return orjson.dumps([trade for _, _, trade in trades.select(query, now_ms)])

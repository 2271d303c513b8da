"""The recent aggregate trades of one symbol that ``GET /fapi/v1/aggTrades`` serves, and how a request selects them
(and the individual trades they are made of, for ``trades`` and ``historicalTrades``).

Trades are kept in id order with their trade time ``T``, bounded two ways: at most ``limit`` trades, and (with a
horizon) none older than ``now - horizon``. Forgetting is decided at the moment of each question (every answer, every
accounting read, every new trade), so a quiet market forgets too. Forgotten trades stay in the list until a whole
``limit`` of them has piled up and is cut off at once, which keeps the cost per trade constant and memory at most
twice ``limit``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from operator import itemgetter
from typing import Generic, NamedTuple, TypeVar

from harvest_pipeline.simulator.market import Trade, trade_lots

Item = TypeVar("Item")
MAX_TIME_WINDOW_MS = 3_600_000
"""Binance refuses ``startTime``/``endTime`` windows longer than an hour (exactly an hour is served: ccxt asks for
it)."""

_id_of = itemgetter(0)
_time_of = itemgetter(1)


def _last_trade_id_of(entry: tuple[int, int, Trade]) -> int:
    return entry[2].last_trade_id


class AggTradeQuery(NamedTuple):
    """The selection of a ``GET /fapi/v1/aggTrades`` request (times in epoch ms, bounds inclusive)."""

    from_id: int | None
    start_ms: int | None
    end_ms: int | None
    limit: int


class IndividualTrade(NamedTuple):
    """One individual trade of an aggregated one, as ``@trade`` reports it (its lots from ``trade_lots``)."""

    trade_id: int
    price_ticks: int
    lots: int
    trade_ms: int
    buyer_is_maker: bool


class TradeHistory(Generic[Item]):
    """Kept trades as ``(agg_id, trade_ms, item)`` entries in id order; ``item`` is whatever the owner formats."""

    def __init__(self, limit: int, horizon_s: float | None):
        self.limit = limit
        self.horizon_ms = None if horizon_s is None else round(horizon_s * 1000)
        self.entries: list[tuple[int, int, Item]] = []
        self.first = 0
        """Index of the oldest entry still served; the ones before it are forgotten."""
        self.forgot_any = False

    def remember(self, entries: Iterable[tuple[int, int, Item]], now_ms: int) -> None:
        """Append newer trades (ids above every kept one) and forget what they push out."""
        self.entries.extend(entries)
        self.forget(now_ms)

    def forget(self, now_ms: int) -> None:
        """Stop serving trades beyond the count limit or older than the horizon at ``now_ms``."""
        entries = self.entries
        first = max(self.first, len(entries) - self.limit)
        if self.horizon_ms is not None:
            first = bisect_left(entries, now_ms - self.horizon_ms, lo=first, key=_time_of)
        if first > self.first:
            self.forgot_any = True
        if first >= self.limit:
            del entries[:first]
            first = 0
        self.first = first

    def oldest_kept_id(self) -> int | None:
        """The id of the oldest trade still served (None when none is)."""
        return self.entries[self.first][0] if self.first < len(self.entries) else None

    def select(self, query: AggTradeQuery, now_ms: int) -> list[tuple[int, int, Item]]:
        """Binance's answer: with a lower bound (``fromId``/``startTime``) the oldest ``limit`` matches from it, in
        id order; without one the newest ``limit`` matches (ending at ``endTime`` when given)."""
        self.forget(now_ms)
        entries = self.entries
        low, high = self.first, len(entries)
        if query.from_id is not None:
            low = bisect_left(entries, query.from_id, lo=low, hi=high, key=_id_of)
        if query.start_ms is not None:
            low = bisect_left(entries, query.start_ms, lo=low, hi=high, key=_time_of)
        if query.end_ms is not None:
            high = bisect_right(entries, query.end_ms, lo=low, hi=high, key=_time_of)
        if query.from_id is None and query.start_ms is None:
            return entries[max(low, high - query.limit) : high]
        return entries[low : min(high, low + query.limit)]


def select_individual(
    history: TradeHistory[Trade], from_id: int | None, limit: int, now_ms: int
) -> list[IndividualTrade]:
    """The individual trades of the kept aggregated ones, in id order: the oldest ``limit`` from trade id
    ``from_id``, or without it the newest ``limit``. Ids and lots are those of the ``@trade`` stream."""
    history.forget(now_ms)
    entries = history.entries
    if from_id is None:
        low = len(entries)
        count = 0
        while low > history.first and count < limit:
            low -= 1
            trade = entries[low][2]
            count += trade.last_trade_id - trade.first_trade_id + 1
        return _split(entries[low:], None)[-limit:]
    low = high = bisect_left(entries, from_id, lo=history.first, key=_last_trade_id_of)
    count = 0
    while high < len(entries) and count < limit:
        trade = entries[high][2]
        count += trade.last_trade_id - max(trade.first_trade_id, from_id) + 1
        high += 1
    return _split(entries[low:high], from_id)[:limit]


def _split(entries: list[tuple[int, int, Trade]], from_id: int | None) -> list[IndividualTrade]:
    """The individual trades of ``entries`` (those from ``from_id`` on when given)."""
    trades = [
        IndividualTrade(trade.first_trade_id + i, trade.price_ticks, lots, trade_ms, trade.buyer_is_maker)
        for _, trade_ms, trade in entries
        for i, lots in enumerate(trade_lots(trade.lots, trade.last_trade_id - trade.first_trade_id + 1))
    ]
    return trades if from_id is None else [trade for trade in trades if trade.trade_id >= from_id]

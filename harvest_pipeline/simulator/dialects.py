"""What the simulator does differently on each market: one ``Dialect`` per market, read by the exchange, REST and the
server instead of branching on the market's name.

The facts about a market (its REST prefix, routing, depth chain, snapshot limit, weight limit, status key, stream kinds,
open interest) are in ``harvest_pipeline.markets``; a dialect adds how the simulator speaks it: the formatter of every
message that differs from USDⓈ-M's (each field defaults to ``wire``'s; exchangeInfo's are in ``exchange_info``), the
REST endpoints with their request weights, and the depth ``limit`` rule. The market model behind them is the same
everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harvest_pipeline.markets import COINM, SPOT, USDM, Market, market
from harvest_pipeline.simulator import wire, wire_coinm, wire_spot
from harvest_pipeline.simulator.derivatives import MarkPrice
from harvest_pipeline.simulator.exchange_info import (
    coinm_exchange_info,
    coinm_symbol,
    spot_exchange_info,
    spot_symbol,
    usdm_exchange_info,
    usdm_symbol,
)
from harvest_pipeline.simulator.instruments import Instrument
from harvest_pipeline.simulator.klines import DayStats, Kline
from harvest_pipeline.simulator.market import DepthDiff, Top, Trade
from harvest_pipeline.simulator.trade_history import IndividualTrade

Levels = list[tuple[int, int]]
DepthFrame = Callable[[Instrument, DepthDiff, int, int, Levels, Levels], bytes]
"""``(spec, diff, event_ms, transaction_ms, bids, asks)`` to a depth stream frame."""
DepthBody = Callable[[Instrument, int, int, Levels, Levels], bytes]
"""``(spec, last_update_id, now_ms, bids, asks)`` to a REST depth body."""


@dataclass(frozen=True)
class DepthRule:
    """Which ``limit`` a REST depth request may ask for, and what it weighs."""

    default_limit: int
    max_limit: int
    valid_limits: tuple[int, ...] | None
    """The only limits accepted; None: any from 1 up, more than ``max_limit`` served as ``max_limit``."""
    weights: tuple[tuple[int, int], ...]
    """``(up to limit, weight)`` steps, ascending; larger limits weigh the last step's weight."""

    def weight(self, limit: int) -> int:
        """The request weight of a depth request for ``limit`` (charged before the limit is checked)."""
        return next((weight for top, weight in self.weights if limit <= top), self.weights[-1][1])

    def levels(self, limit: int) -> int:
        """The levels a side a request for ``limit`` is answered with; ``ValueError`` for a limit it refuses."""
        if self.valid_limits is not None:
            if limit not in self.valid_limits:
                raise ValueError(f"Invalid limit {limit}; valid limits are {list(self.valid_limits)}.")
            return limit
        if limit < 1:
            raise ValueError(f"Invalid limit {limit}; it must be 1..{self.max_limit}.")
        return min(limit, self.max_limit)


RequestWeight = Callable[[Mapping[str, str]], int]
"""The request weight of a REST request, from its query."""


def per_symbol(with_symbol: int, without_symbol: int) -> RequestWeight:
    """A weight that depends on whether the request names a ``symbol``."""
    return lambda query: with_symbol if "symbol" in query else without_symbol


def by_limit(default_limit: int, steps: tuple[tuple[int, int], ...]) -> RequestWeight:
    """A weight by the requested ``limit``: the weight of the first ``(below, weight)`` step the limit is below (the
    last step's weight beyond them all); a ``limit`` that is not a number weighs as the default."""

    def weight(query: Mapping[str, str]) -> int:
        text = query.get("limit", "")
        limit = int(text) if text.isdigit() else default_limit
        return next((weight for below, weight in steps if limit < below), steps[-1][1])

    return weight


Weights = Mapping[str, RequestWeight]
"""REST endpoint (the path after the prefix) to its request weight; endpoints not listed are 404."""

_FUTURES_WEIGHTS: Weights = {
    "aggTrades": per_symbol(20, 20),
    "trades": per_symbol(5, 5),
    "historicalTrades": per_symbol(20, 20),
    "klines": by_limit(500, ((100, 1), (500, 2), (1001, 5), (1501, 10))),
    "ticker/bookTicker": per_symbol(2, 5),
    "exchangeInfo": per_symbol(1, 1),
    "time": per_symbol(1, 1),
    "ping": per_symbol(1, 1),
    "ticker/24hr": per_symbol(1, 40),
}
_DERIVATIVES_WEIGHTS: Weights = {"openInterest": per_symbol(1, 1), "premiumIndex": per_symbol(1, 10)}
"""The REST endpoints of a market with open interest (perpetuals): open interest and the mark price model."""
_SPOT_WEIGHTS: Weights = {
    "aggTrades": per_symbol(4, 4),
    "trades": per_symbol(25, 25),
    "historicalTrades": per_symbol(25, 25),
    "klines": per_symbol(2, 2),
    "ticker/bookTicker": per_symbol(2, 4),
    "exchangeInfo": per_symbol(20, 20),
    "time": per_symbol(1, 1),
    "ping": per_symbol(1, 1),
    "ticker/24hr": per_symbol(2, 80),
}


@dataclass(frozen=True)
class Dialect:
    """How the simulator serves one market. The formatter fields are plain functions (no bound-method cost on the
    hot path); each defaults to the USDⓈ-M one in ``wire``."""

    market: Market
    stream_kinds: tuple[str, ...]
    """Every stream kind the simulator publishes on this market; any other subscription is acknowledged and silent."""
    rest_weights: Weights
    depth_rule: DepthRule
    agg_trade: Callable[[Instrument, Trade, int, int], bytes] = wire.agg_trade
    individual_trades: Callable[[Instrument, Trade, int, int], list[tuple[int, bytes]]] = wire.individual_trades
    book_ticker: Callable[[Instrument, Top, int, int], bytes] = wire.book_ticker
    kline: Callable[[Instrument, Kline, int, bool], bytes] = wire.kline
    depth_update: DepthFrame = wire.depth_update
    partial_depth: DepthFrame = wire.depth_update
    depth_snapshot: DepthBody = wire.depth_snapshot
    rest_agg_trades: Callable[[Instrument, list[tuple[int, int, Trade]]], bytes] = wire.rest_agg_trades
    trade_row: Callable[[Instrument, IndividualTrade], dict[str, Any]] = wire.trade_row
    book_ticker_row: Callable[[Instrument, Top, int], dict[str, Any]] = wire.book_ticker_row
    kline_row: Callable[[Instrument, Kline], list[Any]] = wire.kline_row
    exchange_info: Callable[[list[dict[str, Any]], int, int], bytes] = usdm_exchange_info
    exchange_info_symbol: Callable[[Instrument, str], dict[str, Any]] = usdm_symbol
    open_interest_row: Callable[[Instrument, int, int], dict[str, Any]] = wire.open_interest_row
    ticker_24hr_row: Callable[[Instrument, DayStats, int], dict[str, Any]] = wire.ticker_24hr_row
    premium_index_row: Callable[[Instrument, MarkPrice], dict[str, Any]] = wire.premium_index_row

    @property
    def rest_prefix(self) -> str:
        """What every REST path starts with (``/fapi/v1/``)."""
        return f"{self.market.rest_prefix}/"

    def publishes(self, kind: str) -> bool:
        """Whether streams of ``kind`` carry frames on this market."""
        return kind in self.stream_kinds


def _rest_weights(of: Market, base: Weights) -> Weights:
    return {**base, **(_DERIVATIVES_WEIGHTS if of.has_open_interest else {})}


_FUTURES_DEPTH = DepthRule(
    default_limit=500,
    max_limit=USDM.snapshot_limit,
    valid_limits=(5, 10, 20, 50, 100, 500, 1000),
    weights=((50, 2), (100, 5), (500, 10), (1000, 20)),
)
_FUTURES_EXTRA_KINDS = (wire.DEPTH_PARTIAL, wire.MARK_PRICE_3S)
"""Kinds served beyond the market table's (the top-20 book, the 3 s mark price)."""

USDM_DIALECT = Dialect(
    market=USDM,
    stream_kinds=USDM.stream_kinds + _FUTURES_EXTRA_KINDS,
    rest_weights=_rest_weights(USDM, _FUTURES_WEIGHTS),
    depth_rule=_FUTURES_DEPTH,
)
COINM_DIALECT = Dialect(
    market=COINM,
    stream_kinds=COINM.stream_kinds + _FUTURES_EXTRA_KINDS,
    rest_weights=_rest_weights(COINM, _FUTURES_WEIGHTS),
    depth_rule=_FUTURES_DEPTH,
    kline=wire_coinm.kline,
    depth_snapshot=wire_coinm.depth_snapshot,
    trade_row=wire_coinm.trade_row,
    book_ticker_row=wire_coinm.book_ticker_row,
    kline_row=wire_coinm.kline_row,
    exchange_info=coinm_exchange_info,
    exchange_info_symbol=coinm_symbol,
    open_interest_row=wire_coinm.open_interest_row,
    ticker_24hr_row=wire_coinm.ticker_24hr_row,
    premium_index_row=wire_coinm.premium_index_row,
)
SPOT_DIALECT = Dialect(
    market=SPOT,
    stream_kinds=SPOT.stream_kinds + (wire.DEPTH_PARTIAL, wire.DEPTH_1S),
    rest_weights=_rest_weights(SPOT, _SPOT_WEIGHTS),
    depth_rule=DepthRule(
        default_limit=100,
        max_limit=SPOT.snapshot_limit,
        valid_limits=None,
        weights=((100, 5), (500, 25), (1000, 50), (SPOT.snapshot_limit, SPOT.snapshot_weight)),
    ),
    agg_trade=wire_spot.agg_trade,
    individual_trades=wire_spot.individual_trades,
    book_ticker=wire_spot.book_ticker,
    depth_update=wire_spot.depth_update,
    partial_depth=wire_spot.partial_book,
    depth_snapshot=wire_spot.depth_snapshot,
    rest_agg_trades=wire_spot.rest_agg_trades,
    trade_row=wire_spot.trade_row,
    book_ticker_row=wire_spot.book_ticker_row,
    exchange_info=spot_exchange_info,
    exchange_info_symbol=spot_symbol,
)

DIALECTS: dict[str, Dialect] = {each.market.name: each for each in (USDM_DIALECT, COINM_DIALECT, SPOT_DIALECT)}


def dialect(market_name: str) -> Dialect:
    """The dialect of the market called ``market_name``; ``ValueError`` listing the known markets otherwise."""
    return DIALECTS[market(market_name).name]

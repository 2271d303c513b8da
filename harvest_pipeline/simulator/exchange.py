"""The simulated exchange: the market models of all symbols, advanced tick by tick and published to the hub.

Every 10 ms tick runs a seeded number of book events per symbol and publishes their trades and best bid/ask changes;
every 10th tick (100 ms) publishes the depth diffs and top-20 books. The content of tick N depends only on the seed, the
rate and the faults, never on timing, so a seed reproduces the same trades and diffs (prices, quantities, sides). Only
the timestamps and the ids are wall clock: ids start from the run's start time, so a restarted simulator continues
above every id an earlier run sent, as the exchange does (bound in ``ids``).
"""

from __future__ import annotations

from typing import Any

from harvest_pipeline.simulator import wire
from harvest_pipeline.simulator.accounting import TradeIdTally
from harvest_pipeline.simulator.book_history import BookHistory
from harvest_pipeline.simulator.config import SimulatorConfig
from harvest_pipeline.simulator.connections import Hub
from harvest_pipeline.simulator.faults import FaultState
from harvest_pipeline.simulator.ids import MAX_EVENTS_PER_TICK, FirstIds, first_ids_at
from harvest_pipeline.simulator.instruments import Instrument, instrument
from harvest_pipeline.simulator.market import SymbolMarket, Trade
from harvest_pipeline.simulator.trade_history import AggTradeQuery, TradeHistory

TICK_S = 0.01
TICKS_PER_DEPTH_FRAME = 10


class SymbolFeed:
    """One symbol: its market model, its stream names, the recent aggregate trades REST serves, the ids issued and
    the recent true books."""

    def __init__(self, spec: Instrument, config: SimulatorConfig, first_ids: FirstIds, start_ms: int):
        self.spec = spec
        self.market = market = SymbolMarket(spec, config.seed, first_ids)
        self.book_history = BookHistory(
            market.update_id, market.bids.lots, market.asks.lots, start_ms, config.book_history_s
        )
        self.agg_stream = wire.stream_name(spec.symbol, wire.AGG_TRADE)
        self.ticker_stream = wire.stream_name(spec.symbol, wire.BOOK_TICKER)
        self.diff_stream = wire.stream_name(spec.symbol, wire.DEPTH_DIFF)
        self.partial_stream = wire.stream_name(spec.symbol, wire.DEPTH_PARTIAL)
        self.history: TradeHistory[Trade] = TradeHistory(config.agg_trade_history, config.agg_trade_horizon_s)
        self.ids = TradeIdTally()

    def remember(self, trades: list[Trade], trade_ms: int) -> None:
        """Count the ids of trades just issued (in id order) and keep the trades for REST."""
        self.ids.count_issued(trades[0].agg_id, trades[-1].agg_id, len(trades))
        self.history.remember(((trade.agg_id, trade_ms, trade) for trade in trades), trade_ms)

    def skip_agg_ids(self, count: int) -> None:
        """Never issue the next ``count`` aggregate trade ids, and account for them as skipped."""
        self.ids.count_skipped(self.market.next_agg_id, count)
        self.market.skip_agg_ids(count)

    def trades_json(self, now_ms: int) -> dict[str, Any]:
        """The accounting of this symbol's trade ids, with what REST still serves at ``now_ms``."""
        self.history.forget(now_ms)
        forgotten_below = None
        if self.history.forgot_any:
            oldest = self.history.oldest_kept_id()
            forgotten_below = oldest if oldest is not None else self.market.next_agg_id
        return self.ids.to_json(forgotten_below)


class Exchange:
    """All symbols of one simulator, publishing through ``hub``; ``start_ms`` (wall clock) places the first ids."""

    def __init__(self, config: SimulatorConfig, hub: Hub, faults: FaultState, start_ms: int):
        self.rate = config.rate
        self.hub = hub
        self.faults = faults
        first_ids = first_ids_at(start_ms)
        self.feeds = {symbol: SymbolFeed(instrument(symbol), config, first_ids, start_ms) for symbol in config.symbols}
        self.ticks = 0

    def run_tick(self, now_ms: int, now: float) -> None:
        """Advance every symbol by one 10 ms tick and publish what happened (``now`` is the loop clock for faults)."""
        multiplier = self.rate * self.faults.rate_multiplier(now)
        hub = self.hub
        for feed in self.feeds.values():
            spec = feed.spec
            events = min(feed.market.event_count(TICK_S, multiplier), MAX_EVENTS_PER_TICK)
            trades, tops = feed.market.step(events)
            if trades:
                feed.remember(trades, now_ms)
                if hub.wants(feed.agg_stream):
                    for trade in trades:
                        hub.publish(feed.agg_stream, trade.agg_id, wire.agg_trade(spec, trade, now_ms, now_ms), now)
            if tops and hub.wants(feed.ticker_stream):
                for top in tops:
                    hub.publish(feed.ticker_stream, top.update_id, wire.book_ticker(spec, top, now_ms), now)
        self.ticks += 1
        if self.ticks % TICKS_PER_DEPTH_FRAME == 0:
            for feed in self.feeds.values():
                self._publish_depth(feed, now_ms, now)

    def _publish_depth(self, feed: SymbolFeed, now_ms: int, now: float) -> None:
        market = feed.market
        diff = market.take_diff()
        if diff is None:
            return
        feed.book_history.record(diff, now_ms, market.bids.lots, market.asks.lots)
        if self.faults.take_break_pu(feed.spec.symbol):
            return
        hub = self.hub
        if hub.wants(feed.diff_stream):
            payload = wire.depth_update(feed.spec, diff, now_ms, diff.bids, diff.asks)
            hub.publish(feed.diff_stream, diff.last_update_id, payload, now)
        if hub.wants(feed.partial_stream):
            bids, asks = market.depth(wire.PARTIAL_DEPTH_LEVELS)
            hub.publish(
                feed.partial_stream, diff.last_update_id, wire.depth_update(feed.spec, diff, now_ms, bids, asks), now
            )

    def depth_body(self, symbol: str, limit: int, now_ms: int) -> bytes:
        """The REST depth body of ``symbol``; ``LookupError`` if it is not simulated."""
        feed = self._require(symbol)
        bids, asks = feed.market.depth(limit)
        return wire.depth_snapshot(feed.spec, feed.market.update_id, now_ms, bids, asks)

    def agg_trades_body(self, symbol: str, query: AggTradeQuery, now_ms: int) -> bytes:
        """The REST aggTrades body of ``symbol``; ``LookupError`` if it is not simulated."""
        feed = self._require(symbol)
        return wire.rest_agg_trades(feed.spec, feed.history.select(query, now_ms))

    def true_book_json(self, symbol: str, update_id: int, limit: int | None) -> dict[str, Any]:
        """The book of ``symbol`` right after the latest diff boundary ``<= update_id``, at most ``limit`` levels a
        side, with prices and quantities as the wire prints them; ``LookupError`` for an unknown symbol or an id
        older than the kept history."""
        feed = self.feed(symbol)
        if feed is None:
            raise LookupError(f"symbol {symbol!r} is not simulated; this simulator trades {', '.join(self.feeds)}")
        book = feed.book_history.book_at(update_id, limit)
        spec = feed.spec
        return {
            "symbol": spec.symbol,
            "update_id": book.update_id,
            "requested_update_id": update_id,
            "bids": _wire_levels(spec, book.bids),
            "asks": _wire_levels(spec, book.asks),
        }

    def trades_json(self, now_ms: int) -> dict[str, dict[str, Any]]:
        """Per symbol, the accounting of the aggregate trade ids issued, skipped and forgotten."""
        return {symbol: feed.trades_json(now_ms) for symbol, feed in self.feeds.items()}

    def _require(self, symbol: str) -> SymbolFeed:
        feed = self.feed(symbol)
        if feed is None:
            raise LookupError("Invalid symbol.")
        return feed

    def feed(self, symbol: str) -> SymbolFeed | None:
        """The feed of ``symbol`` (any case), or None when the simulator does not trade it."""
        return self.feeds.get(symbol.upper())


def _wire_levels(spec: Instrument, levels: list[tuple[int, int]]) -> list[list[str]]:
    """``[[price, qty], ...]`` with the decimal strings the depth streams and REST print for these levels."""
    return [[spec.price(tick), spec.qty(lots)] for tick, lots in levels]

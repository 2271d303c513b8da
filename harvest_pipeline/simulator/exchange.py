"""The simulated exchange: the market models of all symbols, advanced tick by tick and published to the hub.

Every 10 ms tick runs a seeded number of book events per symbol and publishes their trades and best bid/ask changes;
every 10th tick (100 ms) publishes the depth diffs and top-20 books. The content of tick N depends only on the seed, the
rate and the faults, never on timing, so a seed reproduces the same trades and diffs (prices, quantities, sides). Only
the timestamps and the ids are wall clock: ids start from the run's start time, so a restarted simulator continues
above every id an earlier run sent, as the exchange does (bound in ``ids``).
"""

from __future__ import annotations

from bisect import bisect_left

from harvest_pipeline.simulator import wire
from harvest_pipeline.simulator.config import SimulatorConfig
from harvest_pipeline.simulator.connections import Hub
from harvest_pipeline.simulator.faults import FaultState
from harvest_pipeline.simulator.ids import MAX_EVENTS_PER_TICK, FirstIds, first_ids_at
from harvest_pipeline.simulator.instruments import Instrument, instrument
from harvest_pipeline.simulator.market import SymbolMarket, Trade

TICK_S = 0.01
TICKS_PER_DEPTH_FRAME = 10


class SymbolFeed:
    """One symbol: its market model, its stream names and the recent aggregate trades REST serves."""

    def __init__(self, spec: Instrument, seed: int, history: int, first_ids: FirstIds):
        self.spec = spec
        self.market = SymbolMarket(spec, seed, first_ids)
        self.agg_stream = wire.stream_name(spec.symbol, wire.AGG_TRADE)
        self.ticker_stream = wire.stream_name(spec.symbol, wire.BOOK_TICKER)
        self.diff_stream = wire.stream_name(spec.symbol, wire.DEPTH_DIFF)
        self.partial_stream = wire.stream_name(spec.symbol, wire.DEPTH_PARTIAL)
        self.history: list[tuple[Trade, int]] = []
        self.history_limit = history

    def remember(self, trades: list[Trade], trade_ms: int) -> None:
        """Keep trades for REST, trimming the oldest in chunks so the list stays bounded."""
        self.history.extend((trade, trade_ms) for trade in trades)
        if len(self.history) > 2 * self.history_limit:
            del self.history[: len(self.history) - self.history_limit]

    def trades_from(self, from_id: int | None, limit: int) -> list[tuple[Trade, int]]:
        """Up to ``limit`` kept trades with id >= ``from_id``, or the latest ``limit`` when ``from_id`` is None."""
        if from_id is None:
            return self.history[-limit:]
        start = bisect_left(self.history, from_id, key=lambda item: item[0].agg_id)
        return self.history[start : start + limit]


class Exchange:
    """All symbols of one simulator, publishing through ``hub``; ``start_ms`` (wall clock) places the first ids."""

    def __init__(self, config: SimulatorConfig, hub: Hub, faults: FaultState, start_ms: int):
        self.rate = config.rate
        self.hub = hub
        self.faults = faults
        first_ids = first_ids_at(start_ms)
        self.feeds = {
            symbol: SymbolFeed(instrument(symbol), config.seed, config.agg_trade_history, first_ids)
            for symbol in config.symbols
        }
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
        diff = feed.market.take_diff()
        if diff is None or self.faults.take_break_pu(feed.spec.symbol):
            return
        hub = self.hub
        if hub.wants(feed.diff_stream):
            payload = wire.depth_update(feed.spec, diff, now_ms, diff.bids, diff.asks)
            hub.publish(feed.diff_stream, diff.last_update_id, payload, now)
        if hub.wants(feed.partial_stream):
            bids, asks = feed.market.depth(wire.PARTIAL_DEPTH_LEVELS)
            hub.publish(
                feed.partial_stream, diff.last_update_id, wire.depth_update(feed.spec, diff, now_ms, bids, asks), now
            )

    def depth_body(self, symbol: str, limit: int, now_ms: int) -> bytes:
        """The REST depth body of ``symbol``; ``LookupError`` if it is not simulated."""
        feed = self._require(symbol)
        bids, asks = feed.market.depth(limit)
        return wire.depth_snapshot(feed.spec, feed.market.update_id, now_ms, bids, asks)

    def agg_trades_body(self, symbol: str, from_id: int | None, limit: int) -> bytes:
        """The REST aggTrades body of ``symbol``; ``LookupError`` if it is not simulated."""
        feed = self._require(symbol)
        return wire.rest_agg_trades(feed.spec, feed.trades_from(from_id, limit))

    def _require(self, symbol: str) -> SymbolFeed:
        feed = self.feed(symbol)
        if feed is None:
            raise LookupError("Invalid symbol.")
        return feed

    def feed(self, symbol: str) -> SymbolFeed | None:
        """The feed of ``symbol`` (any case), or None when the simulator does not trade it."""
        return self.feeds.get(symbol.upper())

"""The simulated exchange: the market models of all symbols, advanced tick by tick and published to the hub.

Every 10 ms tick runs a seeded number of book events per symbol and publishes their trades (aggregated and individual)
and best bid/ask changes; every 10th tick (100 ms) publishes the depth diffs and top-20 books. The rest follows the
exchange clock: at each 250 ms boundary the current 1-minute kline goes out, at each second the mark price model and
the open interest step and ``@markPrice@1s`` goes out (``@markPrice`` every third second), at each minute the finished
kline goes out closed, and the latest liquidation of each second goes out when that second has ended (on spot, which
has neither, the mark price model and the liquidations run unpublished, and the diffs of each second go out merged on
``@depth``). Every frame and REST body is formatted in the market's dialect (``dialects``). The trades, best
bid/ask changes and depth diffs of a tick carry the tick's clock as their matching time ``T`` and an event time ``E``
that many milliseconds later (``latency``), and go out once the exchange clock reaches that ``E``. The content of
tick N depends only on the seed, the rate and the faults, never on timing, so a seed reproduces the same trades and
diffs (prices, quantities, sides). Only the timestamps, the ids and what is sampled at clock boundaries (the mid the
mark price model sees, which minute a trade falls in) are wall clock: ids start from the run's start time, so a
restarted simulator continues above every id an earlier run sent, as the exchange does (bound in ``ids``). A frame is
encoded only when someone subscribed to its stream.

Symbols can be listed and delisted while the clock runs (``set_listing``, called from the event loop and so always
between two ticks): a listed symbol joins at the next tick with its own seeded model and ids from the clock at its
listing; a delisted one leaves the ticks (and the REST answers) but keeps its model, for its accounting and a relisting.
"""

from __future__ import annotations

from typing import Any

from harvest_pipeline.simulator import dialects, wire
from harvest_pipeline.simulator.accounting import TradeIdTally
from harvest_pipeline.simulator.book_history import BookHistory
from harvest_pipeline.simulator.config import SimulatorConfig
from harvest_pipeline.simulator.connections import Hub
from harvest_pipeline.simulator.derivatives import MarkModel, OpenInterestModel
from harvest_pipeline.simulator.faults import FaultState
from harvest_pipeline.simulator.ids import MAX_EVENTS_PER_TICK, FirstIds, first_ids_at
from harvest_pipeline.simulator.instruments import Instrument, instrument
from harvest_pipeline.simulator.klines import KlineSeries
from harvest_pipeline.simulator.latency import DelayedPublisher, PublishLatency
from harvest_pipeline.simulator.liquidations import LiquidationWindow
from harvest_pipeline.simulator.listings import SETTLING, TRADING, ListingChange, ListingError, listing_instrument
from harvest_pipeline.simulator.market import SymbolMarket, Trade
from harvest_pipeline.simulator.slow_depth import DiffMerger
from harvest_pipeline.simulator.trade_history import AggTradeQuery, TradeHistory

TICK_S = 0.01
TICKS_PER_DEPTH_FRAME = 10
KLINE_UPDATE_MS = 250
"""The current kline goes out at every 250 ms boundary of the exchange clock (every clock boundary is one of these)."""
MARK_PRICE_SLOW_MS = 3_000
"""``@markPrice`` goes out every 3 s, ``@markPrice@1s`` every second."""


class SymbolFeed:
    """One symbol: its market model, its stream names, the recent aggregate trades REST serves, the ids issued, the
    recent true books, its klines, mark price, open interest and liquidations."""

    def __init__(self, spec: Instrument, config: SimulatorConfig, first_ids: FirstIds, start_ms: int):
        self.spec = spec
        self.market = market = SymbolMarket(spec, config.seed, first_ids, config.liquidation_share)
        self.book_history = BookHistory(
            market.update_id, market.bids.lots, market.asks.lots, start_ms, config.book_history_s
        )
        self.agg_stream = wire.stream_name(spec.symbol, wire.AGG_TRADE)
        self.trade_stream = wire.stream_name(spec.symbol, wire.TRADE)
        self.ticker_stream = wire.stream_name(spec.symbol, wire.BOOK_TICKER)
        self.diff_stream = wire.stream_name(spec.symbol, wire.DEPTH_DIFF)
        self.slow_diff_stream = wire.stream_name(spec.symbol, wire.DEPTH_1S)
        self.partial_stream = wire.stream_name(spec.symbol, wire.DEPTH_PARTIAL)
        self.kline_stream = wire.stream_name(spec.symbol, wire.KLINE_1M)
        self.mark_stream = wire.stream_name(spec.symbol, wire.MARK_PRICE_1S)
        self.slow_mark_stream = wire.stream_name(spec.symbol, wire.MARK_PRICE_3S)
        self.force_order_stream = wire.stream_name(spec.symbol, wire.FORCE_ORDER)
        self.history: TradeHistory[Trade] = TradeHistory(config.agg_trade_history, config.agg_trade_horizon_s)
        self.ids = TradeIdTally()
        self.klines = KlineSeries(start_ms, spec.start_ticks)
        self.mark = MarkModel(spec, config.seed, self.mid_e8(), start_ms)
        self.open_interest = OpenInterestModel(spec, config.seed)
        self.liquidations = LiquidationWindow()
        self.slow_diffs = DiffMerger()

    def remember(self, trades: list[Trade], trade_ms: int) -> None:
        """Count the ids of trades just issued (in id order), keep the trades for REST and add them to the kline."""
        self.ids.count_issued(trades[0].agg_id, trades[-1].agg_id, len(trades))
        self.history.remember(((trade.agg_id, trade_ms, trade) for trade in trades), trade_ms)
        self.klines.add(trades)

    def mid_e8(self) -> int:
        """The middle of the best bid and ask, in units of ``10**-8``."""
        market = self.market
        return (market.bids.best() + market.asks.best()) * self.spec.e8_per_tick // 2

    def resume(self, now_ms: int) -> None:
        """Trade again after a delisting: the minutes that ended meanwhile are closed unpublished and a liquidation
        whose second has ended is dropped, so nothing from before the delisting goes out late."""
        self.klines.close_minutes(now_ms)
        self.liquidations.take_due(now_ms)

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
    """All symbols of one simulator, publishing through ``hub``; ``start_ms`` (exchange clock) places the first ids."""

    def __init__(self, config: SimulatorConfig, hub: Hub, faults: FaultState, start_ms: int):
        self.config = config
        self.dialect = dialect = dialects.dialect(config.market)
        self.publishes_marks = dialect.publishes(wire.MARK_PRICE_1S)
        self.publishes_liquidations = dialect.publishes(wire.FORCE_ORDER)
        self.publishes_slow_depth = dialect.publishes(wire.DEPTH_1S)
        self.rate = config.rate
        self.hub = hub
        self.faults = faults
        self.latency = PublishLatency(config.publish_latency_ms, config.seed, start_ms)
        self.publisher = DelayedPublisher(hub, config.exchange_ms)
        first_ids = first_ids_at(start_ms)
        self.feeds = {
            symbol: SymbolFeed(instrument(symbol, config.market), config, first_ids, start_ms)
            for symbol in config.symbols
        }
        """Every symbol listed since start, trading or delisted."""
        self.trading = dict(self.feeds)
        """The symbols in status TRADING: the ones the clock advances and REST answers about."""
        self.listings = {symbol: [ListingChange(TRADING, start_ms)] for symbol in self.feeds}
        self.ticks = 0
        self.next_update_ms = (start_ms // KLINE_UPDATE_MS + 1) * KLINE_UPDATE_MS
        self.next_second_ms = (start_ms // 1000 + 1) * 1000
        self.slow_mark_period = start_ms // MARK_PRICE_SLOW_MS

    def run_tick(self, now_ms: int, now: float) -> None:
        """Advance every symbol by one 10 ms tick and publish what happened (``now_ms`` is the exchange clock,
        ``now`` the loop clock for faults)."""
        self.publisher.start_tick(now_ms, now)
        new_second = now_ms >= self.next_second_ms
        if new_second:
            for feed in self.trading.values():
                self._close_windows(feed, now_ms, now)
        multiplier = self.rate * self.faults.rate_multiplier(now)
        hub, dialect, publish, latency = self.hub, self.dialect, self.publisher.publish, self.latency
        event_ms = latency.event_ms
        for feed in self.trading.values():
            spec, market = feed.spec, feed.market
            events = min(market.event_count(TICK_S, multiplier), MAX_EVENTS_PER_TICK)
            trades, tops = market.step(events)
            delay = latency.draw_ms(now_ms)
            if trades:
                feed.remember(trades, now_ms)
                if hub.wants(feed.agg_stream):
                    agg_ms = event_ms(feed.agg_stream, now_ms, delay)
                    for trade in trades:
                        publish(feed.agg_stream, trade.agg_id, dialect.agg_trade(spec, trade, agg_ms, now_ms), agg_ms)
                if hub.wants(feed.trade_stream):
                    trade_ms = event_ms(feed.trade_stream, now_ms, delay)
                    for trade in trades:
                        for trade_id, payload in dialect.individual_trades(spec, trade, trade_ms, now_ms):
                            publish(feed.trade_stream, trade_id, payload, trade_ms)
                if market.forced_orders:
                    feed.liquidations.record(market.take_forced_orders(), now_ms)
            if tops and hub.wants(feed.ticker_stream):
                ticker_ms = event_ms(feed.ticker_stream, now_ms, delay)
                for top in tops:
                    publish(
                        feed.ticker_stream, top.update_id, dialect.book_ticker(spec, top, ticker_ms, now_ms), ticker_ms
                    )
        self.ticks += 1
        if self.ticks % TICKS_PER_DEPTH_FRAME == 0:
            for feed in self.trading.values():
                self._publish_depth(feed, now_ms)
        if now_ms >= self.next_update_ms:
            self.next_update_ms = (now_ms // KLINE_UPDATE_MS + 1) * KLINE_UPDATE_MS
            self._publish_on_the_clock(now_ms, now, new_second)

    def _close_windows(self, feed: SymbolFeed, now_ms: int, now: float) -> None:
        """Before the events of a tick in a new second: close the minutes that ended (kline ``x`` true) and report
        the latest liquidation of the second that ended."""
        hub = self.hub
        if now_ms >= feed.klines.next_minute_ms:
            closed = feed.klines.close_minutes(now_ms)
            if hub.wants(feed.kline_stream):
                for kline in closed:
                    hub.publish(feed.kline_stream, now_ms, self.dialect.kline(feed.spec, kline, now_ms, True), now)
        liquidation = feed.liquidations.take_due(now_ms)
        if liquidation is not None and self.publishes_liquidations and hub.wants(feed.force_order_stream):
            hub.publish(feed.force_order_stream, now_ms, wire.force_order(feed.spec, liquidation, now_ms), now)
            feed.liquidations.published += 1

    def _publish_on_the_clock(self, now_ms: int, now: float, new_second: bool) -> None:
        """After the events of a tick past a 250 ms boundary: the current klines; in a new second the mark price
        model and open interest step and the mark price goes out (every third second on the slow stream too), or on
        spot the merged depth diff of the second."""
        hub = self.hub
        if new_second:
            self.next_second_ms = (now_ms // 1000 + 1) * 1000
        slow_mark = new_second and now_ms // MARK_PRICE_SLOW_MS != self.slow_mark_period
        self.slow_mark_period = now_ms // MARK_PRICE_SLOW_MS
        for feed in self.trading.values():
            spec = feed.spec
            if hub.wants(feed.kline_stream):
                hub.publish(
                    feed.kline_stream, now_ms, self.dialect.kline(spec, feed.klines.current, now_ms, False), now
                )
            if not new_second:
                continue
            mark = feed.mark.step(feed.mid_e8(), now_ms)
            feed.open_interest.step(feed.klines.total_lots)
            if self.publishes_slow_depth:
                self._publish_slow_depth(feed, now_ms)
            if not self.publishes_marks:
                continue
            if hub.wants(feed.mark_stream):
                hub.publish(feed.mark_stream, now_ms, wire.mark_price_update(spec, mark, now_ms), now)
            if slow_mark and hub.wants(feed.slow_mark_stream):
                hub.publish(feed.slow_mark_stream, now_ms, wire.mark_price_update(spec, mark, now_ms), now)

    def _publish_slow_depth(self, feed: SymbolFeed, now_ms: int) -> None:
        merged = feed.slow_diffs.take()
        if merged is not None and self.hub.wants(feed.slow_diff_stream):
            latency = self.latency
            event_ms = latency.event_ms(feed.slow_diff_stream, now_ms, latency.draw_ms(now_ms))
            payload = self.dialect.depth_update(feed.spec, merged, event_ms, now_ms, merged.bids, merged.asks)
            self.publisher.publish(feed.slow_diff_stream, merged.last_update_id, payload, event_ms)

    def _publish_depth(self, feed: SymbolFeed, now_ms: int) -> None:
        market = feed.market
        diff = market.take_diff()
        if diff is None:
            return
        feed.book_history.record(diff, now_ms, market.bids.lots, market.asks.lots)
        hub, dialect = self.hub, self.dialect
        if self.faults.take_break_pu(feed.spec.symbol):
            feed.slow_diffs.reset()
            return
        latency, publish = self.latency, self.publisher.publish
        delay = latency.draw_ms(now_ms)
        if hub.wants(feed.diff_stream):
            event_ms = latency.event_ms(feed.diff_stream, now_ms, delay)
            payload = dialect.depth_update(feed.spec, diff, event_ms, now_ms, diff.bids, diff.asks)
            publish(feed.diff_stream, diff.last_update_id, payload, event_ms)
        if hub.wants(feed.partial_stream):
            bids, asks = market.depth(wire.PARTIAL_DEPTH_LEVELS)
            event_ms = latency.event_ms(feed.partial_stream, now_ms, delay)
            payload = dialect.partial_depth(feed.spec, diff, event_ms, now_ms, bids, asks)
            publish(feed.partial_stream, diff.last_update_id, payload, event_ms)
        if self.publishes_slow_depth:
            if hub.wants(feed.slow_diff_stream):
                feed.slow_diffs.add(diff)
            else:
                feed.slow_diffs.reset()

    def set_listing(self, symbol: str, status: str, fields: dict[str, Any], now_ms: int) -> dict[str, Any]:
        """List (``TRADING``) or delist (``SETTLING``) a checked ``symbol`` from the next tick on; returns its
        exchangeInfo entry. Listing a new symbol builds its feed (``fields`` change its instrument); a relisting
        resumes its model. Setting the status it already has changes nothing. ``ListingError`` for a symbol never
        listed that is delisted, or an instrument that differs from the one it was first listed with."""
        feed = self.feeds.get(symbol)
        if status == SETTLING:
            if feed is None:
                raise ListingError(f"cannot delist {symbol}: it is not listed (listed: {', '.join(self.feeds)})")
            if self.trading.pop(symbol, None) is not None:
                self.listings[symbol].append(ListingChange(SETTLING, now_ms))
            return self.exchange_info_symbol(feed)
        spec = listing_instrument(symbol, fields, self.config.market, feed.spec if feed is not None else None)
        if feed is None:
            feed = self.feeds[symbol] = SymbolFeed(spec, self.config, first_ids_at(now_ms), now_ms)
            self.listings[symbol] = []
        elif symbol not in self.trading:
            feed.resume(now_ms)
        if symbol not in self.trading:
            self.trading[symbol] = feed
            self.listings[symbol].append(ListingChange(TRADING, now_ms))
        return self.exchange_info_symbol(feed)

    def exchange_info_symbol(self, feed: SymbolFeed) -> dict[str, Any]:
        """The exchangeInfo entry of ``feed``'s symbol, with its status."""
        return self.dialect.exchange_info_symbol(feed.spec, TRADING if feed.spec.symbol in self.trading else SETTLING)

    def exchange_info_symbols(self) -> list[dict[str, Any]]:
        """The exchangeInfo entries of every symbol listed since start, in the order they were first listed."""
        return [self.exchange_info_symbol(feed) for feed in self.feeds.values()]

    def listings_json(self) -> dict[str, list[dict[str, Any]]]:
        """Per symbol, its status changes in order (the first is its listing: at start, or when it was listed)."""
        return {symbol: [change.to_json() for change in changes] for symbol, changes in self.listings.items()}

    def depth_body(self, symbol: str, limit: int, now_ms: int) -> bytes:
        """The REST depth body of ``symbol``; ``LookupError`` if it is not trading."""
        feed = self._require(symbol)
        bids, asks = feed.market.depth(limit)
        return self.dialect.depth_snapshot(feed.spec, feed.market.update_id, now_ms, bids, asks)

    def agg_trades_body(self, symbol: str, query: AggTradeQuery, now_ms: int) -> bytes:
        """The REST aggTrades body of ``symbol``; ``LookupError`` if it is not trading."""
        feed = self._require(symbol)
        return self.dialect.rest_agg_trades(feed.spec, feed.history.select(query, now_ms))

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

    def open_interest_rows(self, symbol: str, now_ms: int) -> list[dict[str, Any]]:
        """The REST openInterest row of ``symbol``; ``LookupError`` if it is not trading."""
        feed = self._require(symbol)
        return [self.dialect.open_interest_row(feed.spec, feed.open_interest.lots, now_ms)]

    def ticker_24hr_rows(self, symbol: str | None, now_ms: int) -> list[dict[str, Any]]:
        """The REST 24 h statistics of ``symbol`` (every trading symbol when None); ``LookupError`` if it is not
        trading."""
        return [self.dialect.ticker_24hr_row(feed.spec, feed.klines.day(), now_ms) for feed in self._select(symbol)]

    def premium_index_rows(self, symbol: str | None) -> list[dict[str, Any]]:
        """The REST premiumIndex rows of ``symbol`` (every trading symbol when None); ``LookupError`` if it is not
        trading."""
        return [self.dialect.premium_index_row(feed.spec, feed.mark.latest) for feed in self._select(symbol)]

    def trades_json(self, now_ms: int) -> dict[str, dict[str, Any]]:
        """Per symbol, the accounting of the aggregate trade ids issued, skipped and forgotten."""
        return {symbol: feed.trades_json(now_ms) for symbol, feed in self.feeds.items()}

    def liquidations_json(self) -> dict[str, dict[str, int]]:
        """Per symbol, the liquidations the model ran, those superseded within their second and those published on
        ``@forceOrder`` (at most one per second)."""
        return {symbol: feed.liquidations.to_json() for symbol, feed in self.feeds.items()}

    def _select(self, symbol: str | None) -> list[SymbolFeed]:
        return list(self.trading.values()) if symbol is None else [self._require(symbol)]

    def _require(self, symbol: str) -> SymbolFeed:
        """The feed of ``symbol`` (any case) if it is trading; ``LookupError`` with Binance's message otherwise."""
        feed = self.trading.get(symbol.upper())
        if feed is None:
            raise LookupError("Invalid symbol.")
        return feed

    def feed(self, symbol: str) -> SymbolFeed | None:
        """The feed of ``symbol`` (any case), trading or delisted, or None when it was never listed."""
        return self.feeds.get(symbol.upper())


def _wire_levels(spec: Instrument, levels: list[tuple[int, int]]) -> list[list[str]]:
    """``[[price, qty], ...]`` with the decimal strings the depth streams and REST print for these levels."""
    return [[spec.price(tick), spec.qty(lots)] for tick, lots in levels]

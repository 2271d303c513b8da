"""The market model: one seeded limit order book per symbol, driven by limit orders, cancels and market orders.

Pure and synchronous: no clock, no I/O. Prices are integer ticks and quantities integer lots. Every book event gets the
next update id; market orders consume the best levels of the opposite side and produce one aggregated trade per price
level, so trades, depth diffs and the best bid/ask always agree. An aggregated trade is made of 1 to 3 individual trades
(never more than its lots), whose lots ``trade_lots`` splits deterministically. A share of the market orders are
liquidations (``ForcedOrder``): each market order independently with probability ``liquidation_share``, drawn as
geometric gaps between liquidations from a random generator of their own, so the book's sequence does not depend on
the share. The sequence of events depends only on the seed, the symbol and the number of events asked for; the ids they
carry also on the ids the model starts from (see ``ids``).
"""

from __future__ import annotations

import math
import random
import sys
from bisect import bisect_left, insort
from typing import NamedTuple

from harvest_pipeline.simulator.ids import FirstIds
from harvest_pipeline.simulator.instruments import Instrument

MAX_LEVELS_PER_SIDE = 400
"""Levels beyond this depth are deleted (with a diff entry): a 1000-level REST snapshot always holds the whole book."""
MIN_LEVELS_PER_SIDE = 60
"""Cancels stop thinning a side below this many levels (a limit order arrives instead)."""
MEAN_DISTANCE_TICKS = 40.0
"""Mean distance from the touch, in ticks (limit orders) or levels (cancels), of the flow away from the touch."""
NEAR_SHARE = 0.5
NEAR_DISTANCE_TICKS = 1.0
"""Half the limit orders and cancels work the touch: within about one tick or level of the best price."""
INITIAL_LEVELS = 150
LIMIT_SHARE = 0.55
CANCEL_SHARE = 0.35
"""The rest of the events (10 %) are market orders."""
LIQUIDATION_SHARE = 0.025
"""Market orders that are liquidations, by default (about 1 in 40)."""


class Trade(NamedTuple):
    """One aggregated trade: fills of one taker order at one price."""

    agg_id: int
    price_ticks: int
    lots: int
    first_trade_id: int
    last_trade_id: int
    buyer_is_maker: bool
    """True when the taker sold (Binance's ``m``)."""


def trade_lots(lots: int, count: int) -> list[int]:
    """The lots of each of the ``count`` individual trades an aggregated trade of ``lots`` is made of, in trade id
    order: as even as possible, the larger ones first (each at least 1 lot when ``count <= lots``)."""
    share, extra = divmod(lots, count)
    return [share + 1] * extra + [share] * (count - extra)


class ForcedOrder(NamedTuple):
    """A market order that was a liquidation: its aggregated trades (one per price level, in order)."""

    taker_sold: bool
    trades: list[Trade]


class Top(NamedTuple):
    """The best bid and ask after book update ``update_id`` (what bookTicker reports)."""

    update_id: int
    bid_ticks: int
    bid_lots: int
    ask_ticks: int
    ask_lots: int


class DepthDiff(NamedTuple):
    """Every level changed by updates ``first_update_id..last_update_id``, with its new absolute size (0 = gone)."""

    first_update_id: int
    last_update_id: int
    previous_update_id: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


class BookSide:
    """One side of the book: lots per price tick plus the ticks kept sorted ascending."""

    def __init__(self, is_bid: bool):
        self.is_bid = is_bid
        self.lots: dict[int, int] = {}
        self.ticks: list[int] = []

    def __len__(self) -> int:
        return len(self.ticks)

    def best(self) -> int:
        """The best price in ticks (highest bid, lowest ask); the side must not be empty."""
        return self.ticks[-1] if self.is_bid else self.ticks[0]

    def nth_best(self, index: int) -> int:
        """The price ``index`` levels away from the best (0 = best)."""
        return self.ticks[-1 - index] if self.is_bid else self.ticks[index]

    def set(self, tick: int, lots: int) -> None:
        """Give level ``tick`` an absolute size; 0 removes it."""
        if lots:
            if tick not in self.lots:
                insort(self.ticks, tick)
            self.lots[tick] = lots
        elif tick in self.lots:
            del self.lots[tick]
            del self.ticks[bisect_left(self.ticks, tick)]

    def top(self, count: int) -> list[tuple[int, int]]:
        """The best ``count`` levels, best first, as ``(tick, lots)``."""
        ticks = self.ticks[::-1][:count] if self.is_bid else self.ticks[:count]
        return [(tick, self.lots[tick]) for tick in ticks]


class SymbolMarket:
    """The order book and order flow of one symbol.

    Without ``first_ids`` the ids start at seeded values (the same ids for a seed); the exchange passes ids derived
    from its start time instead. Either way the seed alone decides prices, quantities and sides.
    """

    def __init__(
        self,
        spec: Instrument,
        seed: int,
        first_ids: FirstIds | None = None,
        liquidation_share: float = LIQUIDATION_SHARE,
    ):
        self.spec = spec
        self.rng = random.Random(f"{seed}:{spec.symbol}")
        self.liquidation_rng = random.Random(f"{seed}:{spec.symbol}:liquidation")
        self.liquidation_share = liquidation_share
        self._orders_to_liquidation = self._liquidation_gap()
        self.forced_orders: list[ForcedOrder] = []
        """The liquidations among the market orders run since the last ``take_forced_orders``."""
        self.bids = BookSide(is_bid=True)
        self.asks = BookSide(is_bid=False)
        seeded_update_id = 1_000_000_000 + self.rng.randrange(10**8)
        seeded_agg_id = 100_000_000 + self.rng.randrange(10**7)
        self.first_ids = first_ids or FirstIds(seeded_update_id, seeded_agg_id, 4 * seeded_agg_id)
        self.update_id, self.next_agg_id, self.next_trade_id = self.first_ids
        self._diff_bids: dict[int, int] = {}
        self._diff_asks: dict[int, int] = {}
        self._diff_first: int | None = None
        self.last_diff_update_id = self.update_id
        self._seed_book()
        self._last_top = self.top()

    def _seed_book(self) -> None:
        mid = self.spec.start_ticks
        for distance in range(1, INITIAL_LEVELS + 1):
            for side, tick in ((self.bids, mid - distance), (self.asks, mid + distance)):
                if distance == 1 or self.rng.random() < 0.8:
                    side.set(tick, self._order_lots())

    def _order_lots(self) -> int:
        return 1 + int(self.rng.expovariate(1.0 / self.spec.mean_order_lots))

    def top(self) -> Top:
        """The current best bid and ask."""
        bid, ask = self.bids.best(), self.asks.best()
        return Top(self.update_id, bid, self.bids.lots[bid], ask, self.asks.lots[ask])

    def event_count(self, seconds: float, multiplier: float) -> int:
        """How many book events happen in the next ``seconds`` at ``multiplier`` times the normal rate (seeded)."""
        mean = self.spec.events_per_second * seconds * multiplier
        whole = int(mean)
        return whole + (1 if self.rng.random() < mean - whole else 0)

    def step(self, events: int) -> tuple[list[Trade], list[Top]]:
        """Run ``events`` random book events; returns the trades and every change of the best bid/ask, in order. The
        liquidations among the market orders are added to ``forced_orders``."""
        trades: list[Trade] = []
        tops: list[Top] = []
        rng, bids, asks = self.rng, self.bids, self.asks
        last = self._last_top
        for _ in range(events):
            self.update_id += 1
            if self._diff_first is None:
                self._diff_first = self.update_id
            draw = rng.random()
            if draw < LIMIT_SHARE:
                self._limit_order(rng.random() < 0.5)
            elif draw < LIMIT_SHARE + CANCEL_SHARE:
                is_bid = rng.random() < 0.5
                if len(bids if is_bid else asks) > MIN_LEVELS_PER_SIDE:
                    self._cancel(is_bid)
                else:
                    self._limit_order(is_bid)
            else:
                self._market_order(rng.random() < 0.5, trades)
            bid, ask = bids.ticks[-1], asks.ticks[0]
            bid_lots, ask_lots = bids.lots[bid], asks.lots[ask]
            if bid != last.bid_ticks or ask != last.ask_ticks or bid_lots != last.bid_lots or ask_lots != last.ask_lots:
                last = Top(self.update_id, bid, bid_lots, ask, ask_lots)
                tops.append(last)
        self._last_top = last
        return trades, tops

    def _set(self, side: BookSide, tick: int, lots: int) -> None:
        side.set(tick, lots)
        (self._diff_bids if side.is_bid else self._diff_asks)[tick] = lots

    def _distance(self) -> int:
        """Levels away from the touch: half the flow works the touch itself, the rest spreads deep into the book."""
        mean = NEAR_DISTANCE_TICKS if self.rng.random() < NEAR_SHARE else MEAN_DISTANCE_TICKS
        return min(int(self.rng.expovariate(1.0 / mean)), MAX_LEVELS_PER_SIDE)

    def _limit_order(self, is_bid: bool) -> None:
        side, other = (self.bids, self.asks) if is_bid else (self.asks, self.bids)
        distance = 1 + self._distance()
        tick = other.best() - distance if is_bid else other.best() + distance
        self._set(side, tick, side.lots.get(tick, 0) + self._order_lots())
        if len(side) > MAX_LEVELS_PER_SIDE:
            self._set(side, side.nth_best(len(side) - 1), 0)

    def _cancel(self, is_bid: bool) -> None:
        side = self.bids if is_bid else self.asks
        tick = side.nth_best(min(self._distance(), len(side) - 1))
        lots = side.lots[tick]
        self._set(side, tick, 0 if self.rng.random() < 0.3 else lots - self.rng.randint(1, lots))

    def _market_order(self, taker_buys: bool, trades: list[Trade]) -> None:
        book = self.asks if taker_buys else self.bids
        available = sum(lots for _, lots in book.top(5))
        wanted = min(1 + int(self.rng.expovariate(2.0 / self.spec.mean_order_lots)), available * 4 // 5)
        first_of_order = len(trades)
        while wanted > 0:
            tick = book.best()
            fill = min(wanted, book.lots[tick])
            first = self.next_trade_id
            trade_ids = 1 + self.rng.randrange(3)
            self.next_trade_id += trade_ids if trade_ids < fill else fill
            trades.append(Trade(self.next_agg_id, tick, fill, first, self.next_trade_id - 1, not taker_buys))
            self.next_agg_id += 1
            self._set(book, tick, book.lots[tick] - fill)
            wanted -= fill
        self._orders_to_liquidation -= 1
        if not self._orders_to_liquidation:
            self._orders_to_liquidation = self._liquidation_gap()
            self.forced_orders.append(ForcedOrder(not taker_buys, trades[first_of_order:]))

    def _liquidation_gap(self) -> int:
        """Market orders up to and including the next liquidation (geometric: each order is one with probability
        ``liquidation_share``)."""
        share = self.liquidation_share
        if share <= 0:
            return sys.maxsize
        if share >= 1:
            return 1
        return 1 + int(math.log(1.0 - self.liquidation_rng.random()) / math.log(1.0 - share))

    def take_forced_orders(self) -> list[ForcedOrder]:
        """The liquidations run since the previous call, in order."""
        orders, self.forced_orders = self.forced_orders, []
        return orders

    def skip_agg_ids(self, count: int) -> None:
        """Never issue the next ``count`` aggregate trade ids (a real gap, as a fault)."""
        self.next_agg_id += count

    def take_diff(self) -> DepthDiff | None:
        """The depth diff since the previous one (None when nothing changed); starts a new diff window."""
        if self._diff_first is None:
            return None
        diff = DepthDiff(
            self._diff_first,
            self.update_id,
            self.last_diff_update_id,
            sorted(self._diff_bids.items(), reverse=True),
            sorted(self._diff_asks.items()),
        )
        self._diff_bids, self._diff_asks, self._diff_first = {}, {}, None
        self.last_diff_update_id = self.update_id
        return diff

    def depth(self, limit: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The best ``limit`` bids and asks, best first."""
        return self.bids.top(limit), self.asks.top(limit)

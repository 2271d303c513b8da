"""The local order book: two sides of scaled-integer price levels, each a dict plus its prices kept sorted.

Prices and quantities are int64 scaled integers (``decimals.SCALE`` units), never floats. A side keeps ``sizes``
(price → quantity) for the updates and ``prices`` sorted ascending for the top levels, so applying a level is a dict
write plus, only when a level appears or disappears, one bisect into a list of a few thousand prices.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence


class BookSide:
    """One side. Bids are best at the end of ``prices`` (highest), asks at the start (lowest)."""

    __slots__ = ("is_bid", "sizes", "prices")

    def __init__(self, is_bid: bool):
        self.is_bid = is_bid
        self.sizes: dict[int, int] = {}
        self.prices: list[int] = []

    def load(self, prices: Sequence[int], qtys: Sequence[int]) -> None:
        """Replace the side by these levels (any order; quantity 0 is no level)."""
        self.sizes = {price: qty for price, qty in zip(prices, qtys, strict=True) if qty}
        self.prices = sorted(self.sizes)

    def apply(self, prices: list[int], qtys: list[int], start: int, stop: int) -> None:
        """Set levels ``start:stop`` of a diff: absolute quantities, 0 removes the level (an unknown one is fine)."""
        sizes, sorted_prices = self.sizes, self.prices
        for index in range(start, stop):
            price = prices[index]
            qty = qtys[index]
            if qty:
                if price not in sizes:
                    insort(sorted_prices, price)
                sizes[price] = qty
            elif sizes.pop(price, None) is not None:
                del sorted_prices[bisect_left(sorted_prices, price)]

    def best(self) -> int | None:
        """The best price, or None when the side is empty."""
        if not self.prices:
            return None
        return self.prices[-1] if self.is_bid else self.prices[0]

    def top_prices(self, depth: int) -> list[int]:
        """The best ``depth`` prices (fewer if the side is shorter), best first."""
        if self.is_bid:
            return self.prices[: -depth - 1 : -1]
        return self.prices[:depth]

    def all_prices(self) -> list[int]:
        """Every price, best first."""
        return self.prices[::-1] if self.is_bid else list(self.prices)


class Book:
    """Both sides of one symbol's book and the update id it is at."""

    __slots__ = ("bids", "asks", "update_id", "event_ms")

    def __init__(self) -> None:
        self.bids = BookSide(is_bid=True)
        self.asks = BookSide(is_bid=False)
        self.update_id: int | None = None
        self.event_ms: int | None = None
        """Event time of the diff that brought the book to ``update_id`` (None when a snapshot did)."""

    def load(
        self,
        update_id: int,
        bids: tuple[Sequence[int], Sequence[int]],
        asks: tuple[Sequence[int], Sequence[int]],
        event_ms: int | None = None,
    ) -> None:
        """Replace the whole book (a snapshot or a checkpoint) by ``(prices, qtys)`` per side."""
        self.bids.load(*bids)
        self.asks.load(*asks)
        self.update_id = update_id
        self.event_ms = event_ms

    def is_crossed(self) -> bool:
        """Best bid at or above best ask (crossed or locked); False while a side is empty."""
        bid, ask = self.bids.best(), self.asks.best()
        return bid is not None and ask is not None and bid >= ask

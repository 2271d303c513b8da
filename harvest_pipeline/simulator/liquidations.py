"""Liquidations: what a ``forceOrder`` event says about a forced market order, and Binance's limit of one event per
symbol per second.

Pure, no clock, no I/O. The market model marks some market orders as forced (``market.ForcedOrder``); their fills are
ordinary trades. Binance reports at most one liquidation per symbol per 1000 ms: the latest of the window, sent when
the window ends. ``LiquidationWindow`` does the same and counts what it superseded and what was published.
"""

from __future__ import annotations

from typing import NamedTuple

from harvest_pipeline.simulator.market import ForcedOrder, trade_lots

WINDOW_MS = 1_000


class Liquidation(NamedTuple):
    """The figures of one forceOrder event: lots, ``sum(ticks * lots)`` of the fills, prices in ticks."""

    taker_sold: bool
    lots: int
    last_lots: int
    """Lots of the order's last individual trade (its last fill)."""
    tick_lots: int
    order_ticks: int
    """The worst fill price moved one tick further (the order's limit price, bankruptcy-like)."""
    trade_ms: int


def liquidation_of(order: ForcedOrder, trade_ms: int) -> Liquidation:
    """The forceOrder figures of ``order``, filled at ``trade_ms``."""
    trades = order.trades
    last = trades[-1]
    if order.taker_sold:
        order_ticks = min(trade.price_ticks for trade in trades) - 1
    else:
        order_ticks = max(trade.price_ticks for trade in trades) + 1
    return Liquidation(
        taker_sold=order.taker_sold,
        lots=sum(trade.lots for trade in trades),
        last_lots=trade_lots(last.lots, last.last_trade_id - last.first_trade_id + 1)[-1],
        tick_lots=sum(trade.price_ticks * trade.lots for trade in trades),
        order_ticks=order_ticks,
        trade_ms=trade_ms,
    )


class LiquidationWindow:
    """The latest liquidation of one symbol's current window, and the counts the accounting reports.

    ``orders`` liquidations ran; ``superseded`` of them were replaced by a later one of the same window (never
    reported, by design); ``published`` went out on ``@forceOrder`` (the owner counts them: a window's latest
    liquidation is published only when someone subscribed to the stream). The rest found no subscriber, or one is
    still waiting for its window to end.
    """

    def __init__(self) -> None:
        self.orders = 0
        self.superseded = 0
        self.published = 0
        self._latest: ForcedOrder | None = None
        self._latest_ms = 0

    def record(self, orders: list[ForcedOrder], trade_ms: int) -> None:
        """Liquidations filled at ``trade_ms`` (in order); the last one replaces any earlier one of its window (the
        owner takes the due one before recording the first liquidation of a new window)."""
        self.orders += len(orders)
        self.superseded += len(orders) - 1 + (self._latest is not None)
        self._latest, self._latest_ms = orders[-1], trade_ms

    def take_due(self, now_ms: int) -> Liquidation | None:
        """The liquidation to report at ``now_ms``: the latest of a window that has ended (returned once)."""
        if self._latest is None or now_ms // WINDOW_MS <= self._latest_ms // WINDOW_MS:
            return None
        liquidation = liquidation_of(self._latest, self._latest_ms)
        self._latest = None
        return liquidation

    def to_json(self) -> dict[str, int]:
        """The accounting of this symbol's liquidations."""
        return {"orders": self.orders, "superseded": self.superseded, "published": self.published}

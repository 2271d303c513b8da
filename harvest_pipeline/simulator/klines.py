"""One-minute klines of one symbol, built from its trades, and the rolling 24 h statistics summed from them.

Pure: no clock, no I/O. Prices are integer ticks, quantities integer lots and quote volumes exact sums of
``ticks * lots``, as in ``market``. Minutes are UTC minutes of whatever clock the caller passes (the exchange's). Adding
trades only queues them; they are folded into the current minute, a handful of integer operations each, when the
minute is next read or closed (so the 10 ms hot path pays for a list extend). The last day of closed minutes is kept
(at most 1,439 of them), so the 24 h statistics are a sum over at most 1,440 minutes, computed when asked for, and
REST ``klines`` of any interval up to a day are merged from them (``select_klines``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from harvest_pipeline.simulator.market import Trade, trade_lots

MINUTE_MS = 60_000
DAY_MINUTES = 1_440
INTERVAL_MS = {
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "2h": 120 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "1d": DAY_MINUTES * MINUTE_MS,
}
"""The kline intervals REST serves, merged from the kept minutes (each starts at a multiple of its length)."""


@dataclass(slots=True)
class Kline:
    """One minute: open/high/low/close in ticks, volumes in lots and ``ticks * lots``, the individual trade ids.

    A minute without trades has every price at the previous close and ``first_id == last_id == -1`` (Binance's way).
    """

    open_ms: int
    open: int
    high: int
    low: int
    close: int
    lots: int = 0
    tick_lots: int = 0
    taker_buy_lots: int = 0
    taker_buy_tick_lots: int = 0
    first_id: int = -1
    last_id: int = -1
    span_ms: int = MINUTE_MS
    """The kline's length: a minute, or the interval of a merged REST kline."""

    @property
    def close_ms(self) -> int:
        """The last millisecond of the kline (Binance's ``T``)."""
        return self.open_ms + self.span_ms - 1

    @property
    def count(self) -> int:
        """Individual trades in the minute (their ids are consecutive)."""
        return 0 if self.first_id < 0 else self.last_id - self.first_id + 1


class DayStats(NamedTuple):
    """The trades of the last 24 h (to the minute): what ``GET /fapi/v1/ticker/24hr`` reports."""

    open_ms: int
    open: int
    high: int
    low: int
    last: int
    last_lots: int
    lots: int
    tick_lots: int
    first_id: int
    last_id: int
    trade_count: int


def minute_of(time_ms: int) -> int:
    """The start of the UTC minute holding ``time_ms``."""
    return time_ms - time_ms % MINUTE_MS


class KlineSeries:
    """The current minute of one symbol, the minutes closed within the last day and a running traded volume."""

    def __init__(self, start_ms: int, start_ticks: int):
        self.start_ms = start_ms
        self._current = Kline(minute_of(start_ms), start_ticks, start_ticks, start_ticks, start_ticks)
        self.closed: deque[Kline] = deque(maxlen=DAY_MINUTES - 1)
        self.next_minute_ms = self._current.open_ms + MINUTE_MS
        self._total_lots = 0
        self._last_trade: Trade | None = None
        self._unfolded: list[Trade] = []
        self.add: Callable[[Iterable[Trade]], None] = self._unfolded.extend
        """Queue aggregated trades (in id order) of the current minute (a bare list extend: it runs every tick)."""

    @property
    def current(self) -> Kline:
        """The minute in progress, with every trade added so far."""
        self._fold()
        return self._current

    @property
    def total_lots(self) -> int:
        """Lots traded since start (open interest moves with it)."""
        self._fold()
        return self._total_lots

    def close_minutes(self, now_ms: int) -> list[Kline]:
        """Close every minute that ended before ``now_ms`` (the current one, then empty ones if the clock jumped);
        returns them oldest first. The minute of ``now_ms`` becomes the current one."""
        self._fold()
        closed: list[Kline] = []
        now_minute = minute_of(now_ms)
        while self._current.open_ms < now_minute:
            kline = self._current
            closed.append(kline)
            self.closed.append(kline)
            price, open_ms = kline.close, max(kline.open_ms + MINUTE_MS, now_minute - DAY_MINUTES * MINUTE_MS)
            self._current = Kline(open_ms, price, price, price, price)
        self.next_minute_ms = self._current.open_ms + MINUTE_MS
        return closed

    def day(self) -> DayStats:
        """The statistics of the current minute and the closed ones of the last day (since start if that is later)."""
        klines = [*self.closed, self.current]
        traded = [kline for kline in klines if kline.first_id >= 0]
        last, last_trade = self._current.close, self._last_trade
        last_lots = 0
        if last_trade is not None:
            last_lots = trade_lots(last_trade.lots, last_trade.last_trade_id - last_trade.first_trade_id + 1)[-1]
        return DayStats(
            open_ms=max(klines[0].open_ms, self.start_ms),
            open=klines[0].open,
            high=max((kline.high for kline in traded), default=last),
            low=min((kline.low for kline in traded), default=last),
            last=last,
            last_lots=last_lots,
            lots=sum(kline.lots for kline in traded),
            tick_lots=sum(kline.tick_lots for kline in traded),
            first_id=traded[0].first_id if traded else -1,
            last_id=traded[-1].last_id if traded else -1,
            trade_count=sum(kline.count for kline in traded),
        )

    def _fold(self) -> None:
        """Count the queued trades into the current minute."""
        trades = self._unfolded
        if not trades:
            return
        kline = self._current
        high, low, lots, tick_lots = kline.high, kline.low, 0, 0
        buy_lots, buy_tick_lots = 0, 0
        if kline.first_id < 0:
            first = trades[0]
            high = low = kline.open = first.price_ticks
            kline.first_id = first.first_trade_id
        for _, price, size, _, _, buyer_is_maker in trades:
            if price > high:
                high = price
            elif price < low:
                low = price
            lots += size
            tick_lots += price * size
            if not buyer_is_maker:
                buy_lots += size
                buy_tick_lots += price * size
        last = trades[-1]
        kline.high, kline.low, kline.close, kline.last_id = high, low, last.price_ticks, last.last_trade_id
        kline.lots += lots
        kline.tick_lots += tick_lots
        kline.taker_buy_lots += buy_lots
        kline.taker_buy_tick_lots += buy_tick_lots
        self._total_lots += lots
        self._last_trade = last
        trades.clear()


def select_klines(
    series: KlineSeries, interval_ms: int, start_ms: int | None, end_ms: int | None, limit: int
) -> list[Kline]:
    """Binance's REST answer: klines of ``interval_ms`` merged from the kept minutes (the current one included), with
    an open time from ``start_ms`` to ``end_ms``: the oldest ``limit`` of them from ``start_ms`` when given, otherwise
    the newest ``limit``."""
    buckets: dict[int, list[Kline]] = {}
    for minute in [*series.closed, series.current]:
        buckets.setdefault(minute.open_ms - minute.open_ms % interval_ms, []).append(minute)
    klines = [
        merge_minutes(minutes, open_ms, interval_ms)
        for open_ms, minutes in buckets.items()
        if (start_ms is None or open_ms >= start_ms) and (end_ms is None or open_ms <= end_ms)
    ]
    return klines[:limit] if start_ms is not None else klines[-limit:]


def merge_minutes(minutes: list[Kline], open_ms: int, interval_ms: int) -> Kline:
    """One kline of ``interval_ms`` from its minutes (oldest first): open, high and low of the minutes with trades
    (the first minute's open without any, as a minute without trades), the last close, summed volumes."""
    traded = [minute for minute in minutes if minute.first_id >= 0]
    if not traded:
        price = minutes[0].open
        return Kline(open_ms, price, price, price, minutes[-1].close, span_ms=interval_ms)
    return Kline(
        open_ms,
        traded[0].open,
        max(minute.high for minute in traded),
        min(minute.low for minute in traded),
        minutes[-1].close,
        sum(minute.lots for minute in traded),
        sum(minute.tick_lots for minute in traded),
        sum(minute.taker_buy_lots for minute in traded),
        sum(minute.taker_buy_tick_lots for minute in traded),
        traded[0].first_id,
        traded[-1].last_id,
        interval_ms,
    )

"""What a perpetual has beyond its book: index and mark price, funding rate and open interest, as seeded models.

Pure, no clock, no I/O; the exchange steps them once per second of its clock. Each model draws from a random generator
of its own (seeded from the seed and the symbol), so the book's sequence does not depend on them. Prices are integers
in units of ``10**-8`` (what the wire prints), the funding rate too; open interest is in lots.

- **Index**: the book's mid plus a basis, a mean-reverting random walk of a few hundredths of a percent of the price
  (standing in for the spot markets the index averages).
- **Mark**: the index plus a premium that follows ``mid - index`` smoothed, so it stays near the book.
- **Funding rate**: ``clamp(premium / index / 3 + 0.0001, -0.0075, +0.0075)``, to 8 decimals; positive when the book
  trades above the index, negative (rarely) below it.
- **Estimated settle price**: the index smoothed over about 20 s.
- **Open interest**: starts at a seeded level and moves each second by up to 40 % of the lots traded in that second,
  either way, pulled back gently towards its starting level.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

from harvest_pipeline.simulator.instruments import Instrument

FUNDING_INTERVAL_MS = 8 * 3_600_000
"""Funding happens at 00:00, 08:00 and 16:00 UTC."""
INTEREST_RATE_E8 = 10_000
"""0.0001 (0.01 %) per funding interval, Binance's interest rate for USDT pairs."""
MAX_FUNDING_RATE_E8 = 750_000
"""The funding rate stays within +-0.0075."""
BASIS_PERSISTENCE = 0.99
"""Share of the basis that survives a second (the rest reverts to zero)."""
BASIS_STEP_SHARE = 4e-5
"""Standard deviation of the basis's change per second, as a share of the starting price (the basis settles around
0.03 % of the price)."""
PREMIUM_SMOOTHING = 0.2
SETTLE_SMOOTHING = 0.05
OPEN_INTEREST_ORDERS = 250_000
"""Starting open interest, in mean-sized orders (times 0.5..1.5, seeded): BTCUSDT starts near 10,000 BTC."""
OPEN_INTEREST_TURNOVER = 0.8
OPEN_INTEREST_REVERSION = 0.001


def next_funding_ms(time_ms: int) -> int:
    """The first funding time (00:00, 08:00 or 16:00 UTC) strictly after ``time_ms``."""
    return (time_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS


class MarkPrice(NamedTuple):
    """The mark price model's values at ``time_ms`` (prices and rate in units of ``10**-8``)."""

    time_ms: int
    mark_e8: int
    index_e8: int
    settle_e8: int
    funding_rate_e8: int


class MarkModel:
    """Index, mark, estimated settle price and funding rate of one symbol."""

    def __init__(self, spec: Instrument, seed: int, mid_e8: int, now_ms: int):
        self.rng = random.Random(f"{seed}:{spec.symbol}:mark")
        self.basis_step = spec.start_ticks * spec.e8_per_tick * BASIS_STEP_SHARE
        self.basis = self.rng.gauss(0.0, self.basis_step / math.sqrt(1 - BASIS_PERSISTENCE**2))
        self.premium = -self.basis
        self.settle = mid_e8 + self.basis
        self.latest = self._values(mid_e8, now_ms)

    def step(self, mid_e8: int, now_ms: int) -> MarkPrice:
        """Advance one second with the book's mid at ``mid_e8``; returns (and keeps as ``latest``) the new values."""
        self.basis = self.basis * BASIS_PERSISTENCE + self.rng.gauss(0.0, self.basis_step)
        index = mid_e8 + self.basis
        self.premium += PREMIUM_SMOOTHING * (mid_e8 - index - self.premium)
        self.settle += SETTLE_SMOOTHING * (index - self.settle)
        self.latest = self._values(mid_e8, now_ms)
        return self.latest

    def _values(self, mid_e8: int, now_ms: int) -> MarkPrice:
        index = round(mid_e8 + self.basis)
        funding = round(self.premium / index / 3 * 1e8) + INTEREST_RATE_E8
        funding = max(-MAX_FUNDING_RATE_E8, min(MAX_FUNDING_RATE_E8, funding))
        return MarkPrice(now_ms, index + round(self.premium), index, round(self.settle), funding)


class OpenInterestModel:
    """The open interest of one symbol, in lots."""

    def __init__(self, spec: Instrument, seed: int):
        self.rng = random.Random(f"{seed}:{spec.symbol}:openInterest")
        self.start_lots = round(spec.mean_order_lots * OPEN_INTEREST_ORDERS * (0.5 + self.rng.random()))
        self.lots = self.start_lots
        self.traded_lots = 0

    def step(self, traded_lots: int) -> None:
        """Advance one second; ``traded_lots`` is the symbol's running total of lots traded."""
        traded, self.traded_lots = traded_lots - self.traded_lots, traded_lots
        change = traded * OPEN_INTEREST_TURNOVER * (self.rng.random() - 0.5)
        change -= (self.lots - self.start_lots) * OPEN_INTEREST_REVERSION
        self.lots = max(1, self.lots + round(change))

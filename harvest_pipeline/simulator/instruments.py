"""The simulated instruments of each market: tick and step sizes, price levels and activity, plus exact decimal
formatting.

Prices and quantities are integers inside the simulator (ticks and lots); they become decimal strings only on the wire,
formatted with exactly as many decimals as the tick or step size has, the way Binance prints them. Each market has its
own catalogue (a spot ``BTCUSDT`` is not the USDⓈ-M one); COIN-M quantities are whole contracts of ``contract_size``
USD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from harvest_pipeline.markets import COINM, SPOT, USDM, market

FORMAT_CACHE_SIZE = 50_000
"""Formatted prices (and quantities) remembered per instrument before the memo starts afresh."""


def decimals_of(size: str) -> int:
    """Number of decimals in a size string such as ``"0.010"`` (3) or ``"1"`` (0)."""
    return len(size.split(".", 1)[1]) if "." in size else 0


def units_of(value: str, decimals: int) -> int:
    """``value`` as an integer count of ``10**-decimals`` (``units_of("0.10", 2) == 10``)."""
    whole, _, frac = value.partition(".")
    return int(whole + frac.ljust(decimals, "0")[:decimals])


def format_units(units: int, decimals: int) -> str:
    """The decimal string of ``units * 10**-decimals`` with exactly ``decimals`` decimals (``format_units(5, 3)``
    is ``"0.005"``, ``format_units(-5, 3)`` is ``"-0.005"``)."""
    if units < 0:
        return "-" + format_units(-units, decimals)
    if decimals == 0:
        return str(units)
    digits = str(units).rjust(decimals + 1, "0")
    return f"{digits[:-decimals]}.{digits[-decimals:]}"


def divide_half_even(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` (``denominator`` > 0) rounded to an integer, halves to the even neighbour."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2):
        quotient += 1
    return quotient


@dataclass(frozen=True)
class Instrument:
    """One instrument (a perpetual, or a spot pair): its sizes, where its price starts and how busy it is at rate
    1.0."""

    symbol: str
    base_asset: str
    tick_size: str
    step_size: str
    start_price: str
    mean_order_lots: int
    """Mean size of a limit order, in steps."""
    events_per_second: float
    """Order-book events (limit orders, cancels, market orders) per second at rate 1.0: a normal busy market."""
    quote_asset: str = "USDT"
    pair: str = ""
    """COIN-M: the underlying pair (``BTCUSD``), which its frames carry as ``ps``; empty elsewhere."""
    contract_size: int = 0
    """COIN-M: USD per contract (a quantity of 1 is one contract); 0 elsewhere."""
    _prices: dict[int, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    _quantities: dict[int, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    @cached_property
    def price_decimals(self) -> int:
        """Decimals printed for prices."""
        return decimals_of(self.tick_size)

    @cached_property
    def qty_decimals(self) -> int:
        """Decimals printed for quantities."""
        return decimals_of(self.step_size)

    @cached_property
    def tick_units(self) -> int:
        """One tick in price units (``10**-price_decimals``)."""
        return units_of(self.tick_size, self.price_decimals)

    @cached_property
    def step_units(self) -> int:
        """One lot in quantity units (``10**-qty_decimals``)."""
        return units_of(self.step_size, self.qty_decimals)

    @cached_property
    def quote_decimals(self) -> int:
        """Decimals of an exact quote amount (price times quantity): the price's plus the quantity's."""
        return self.price_decimals + self.qty_decimals

    @cached_property
    def e8_per_tick(self) -> int:
        """One tick in units of ``10**-8`` (the precision of mark and index prices)."""
        return self.tick_units * 10 ** (8 - self.price_decimals)

    @cached_property
    def start_ticks(self) -> int:
        """The starting mid price in ticks."""
        return units_of(self.start_price, self.price_decimals) // self.tick_units

    @cached_property
    def pair_field(self) -> str:
        """The bytes a frame carries after ``"s"`` to name the pair: ``,"ps":"BTCUSD"`` on COIN-M, else nothing."""
        return f',"ps":"{self.pair}"' if self.pair else ""

    def price(self, ticks: int) -> str:
        """The wire string of a price given in ticks (memoised: prices cluster around the touch)."""
        text = self._prices.get(ticks)
        return text if text is not None else _memo_format(self._prices, ticks, self.tick_units, self.price_decimals)

    def qty(self, lots: int) -> str:
        """The wire string of a quantity given in lots (memoised)."""
        text = self._quantities.get(lots)
        return text if text is not None else _memo_format(self._quantities, lots, self.step_units, self.qty_decimals)

    def quote(self, tick_lots: int) -> str:
        """The exact wire string of a quote amount given as a sum of ``ticks * lots``."""
        return format_units(tick_lots * self.tick_units * self.step_units, self.quote_decimals)


def _memo_format(memo: dict[int, str], count: int, unit: int, decimals: int) -> str:
    """Format ``count * unit`` units and remember it, starting the memo afresh when it is full."""
    if len(memo) >= FORMAT_CACHE_SIZE:
        memo.clear()
    text = memo[count] = format_units(count * unit, decimals)
    return text


INSTRUMENTS: dict[str, Instrument] = {
    spec.symbol: spec
    for spec in (
        Instrument("BTCUSDT", "BTC", "0.10", "0.001", "97000.00", 40, 400.0),
        Instrument("ETHUSDT", "ETH", "0.01", "0.001", "3400.00", 600, 300.0),
        Instrument("BNBUSDT", "BNB", "0.010", "0.01", "690.000", 80, 80.0),
        Instrument("XRPUSDT", "XRP", "0.0001", "0.1", "2.1000", 3000, 120.0),
        Instrument("ADAUSDT", "ADA", "0.00010", "1", "0.70000", 2000, 60.0),
        Instrument("SOLUSDT", "SOL", "0.0100", "0.01", "180.0000", 300, 150.0),
    )
}
"""Every USDⓈ-M symbol the simulator can trade; the default configuration trades them all."""

COINM_INSTRUMENTS: dict[str, Instrument] = {
    spec.symbol: spec
    for spec in (
        Instrument("BTCUSD_PERP", "BTC", "0.1", "1", "97000.0", 40, 300.0, "USD", "BTCUSD", 100),
        Instrument("ETHUSD_PERP", "ETH", "0.01", "1", "3400.00", 300, 200.0, "USD", "ETHUSD", 10),
    )
}
SPOT_INSTRUMENTS: dict[str, Instrument] = {
    spec.symbol: spec
    for spec in (
        Instrument("BTCUSDT", "BTC", "0.01", "0.00001", "97000.00", 2000, 300.0),
        Instrument("ETHUSDT", "ETH", "0.01", "0.0001", "3400.00", 3000, 200.0),
    )
}
CATALOGUES: dict[str, dict[str, Instrument]] = {
    USDM.name: INSTRUMENTS,
    COINM.name: COINM_INSTRUMENTS,
    SPOT.name: SPOT_INSTRUMENTS,
}
"""Per market, every instrument the simulator can trade from the start."""


def default_symbols(market_name: str) -> tuple[str, ...]:
    """What a simulator of ``market_name`` trades unless told otherwise: every instrument of its catalogue, the
    market's own default symbols first."""
    firsts = market(market_name).default_symbols
    return (*firsts, *(symbol for symbol in CATALOGUES[market_name] if symbol not in firsts))


DEFAULT_SYMBOLS: tuple[str, ...] = default_symbols(USDM.name)
"""What a USDⓈ-M simulator trades unless told otherwise."""


def instrument(symbol: str, market_name: str = USDM.name) -> Instrument:
    """The instrument for ``symbol`` (any case) on ``market_name``; ``ValueError`` naming the known symbols
    otherwise."""
    catalogue = CATALOGUES[market(market_name).name]
    try:
        return catalogue[symbol.upper()]
    except KeyError:
        known = ", ".join(catalogue)
        where = "" if market_name == USDM.name else f" on {market(market_name).title}"
        raise ValueError(f"unknown symbol {symbol!r}; the simulator trades {known}{where}") from None

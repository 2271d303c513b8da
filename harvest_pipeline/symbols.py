"""The one rule for a symbol, and the one place the ``symbols`` setting is read: explicit symbols and selectors.

A symbol is checked wherever it comes from input (flags, frames, ledgers) and names a path. The installation setting
``symbols`` (``--symbols``, ``HARVEST_SYMBOLS``) lists explicit symbols and/or selectors, comma-separated:

- ``BTCUSDT``: that symbol, always (whatever the exchange lists);
- ``top:N`` (N >= 1): the N contracts in status TRADING with the highest 24 h volume (REST ``ticker/24hr``: quote
  volume, or base volume on COIN-M, which has no quote volume);
- ``all``: every contract in status TRADING (REST ``exchangeInfo``).

The field names differ per market (``harvest_pipeline.markets``: ``listing_status_key``, ``volume_key``); ``select``
takes them.

The union is recorded (``BTCUSDT,top:5``: BTCUSDT plus the top five). Selectors are resolved by the collector, at
start and every ``symbols_refresh_s``, with ``SymbolSelection.select`` (pure: the REST answers in, the symbols out).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from harvest_pipeline.markets import USDM

SYMBOL_REGEX = "[A-Z0-9][A-Z0-9_]{1,19}"
"""Binance symbols: upper-case letters and digits, and ``_`` after the first (COIN-M ``BTCUSD_PERP``, delivery
contracts ``BTCUSDT_251226``); the SQL side uses this text with ``regexp_full_match``."""
SYMBOL_PATTERN = re.compile(rf"\A{SYMBOL_REGEX}\Z")
SELECTABLE_PATTERN = re.compile(r"\A[A-Z0-9]+(_PERP)?\Z")
"""What the selectors may choose besides following the symbol rule: spot pairs and perpetual contracts (``BTCUSDT``,
COIN-M ``BTCUSD_PERP``), never delivery contracts (``BTCUSDT_250328``, ``BTCUSD_250328``), which expire; those
are recorded only when named explicitly."""

ALL_SELECTOR = "all"
TOP_PREFIX = "top:"
TRADING = "TRADING"
"""The exchangeInfo status of a contract that trades (others: PENDING_TRADING, SETTLING, CLOSE, ...)."""
SELECTOR_HELP = "a symbol such as BTCUSDT, top:N (N >= 1: the N busiest contracts by 24 h volume) or all"


def validate_symbol(symbol: str) -> str:
    """``symbol`` if it follows the rule, else ``ValueError`` saying what is expected."""
    if not SYMBOL_PATTERN.match(symbol):
        raise ValueError(f"invalid symbol {symbol!r}: expected 2-20 upper-case letters, digits or _ (not first)")
    return symbol


def is_selector(entry: str) -> bool:
    """Whether an entry of the ``symbols`` setting is a selector (or meant to be one), not a symbol."""
    return ":" in entry or entry.strip().lower() == ALL_SELECTOR


def canonical_entry(text: str) -> str:
    """How an entry typed by a person is written: selectors lower case (``top:5``, ``all``), symbols upper case."""
    text = text.strip()
    return text.lower() if is_selector(text) else text.upper()


def _top_count(entry: str) -> int:
    count_text = entry[len(TOP_PREFIX) :]
    if not count_text.isdigit() or int(count_text) < 1:
        raise ValueError(f"invalid symbol selector {entry!r}: top:N needs a whole number N >= 1, not {count_text!r}")
    return int(count_text)


@dataclass(frozen=True)
class Selected:
    """What a selection resolved to: the symbols to record, and the trading exchange symbols passed over because a
    selector never chooses them (delivery contracts such as ``BTCUSDT_250328``, names breaking the symbol rule)."""

    symbols: tuple[str, ...]
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class SymbolSelection:
    """The ``symbols`` setting, parsed: explicit symbols plus the selectors ``top:N`` and ``all``."""

    explicit: tuple[str, ...]
    top: int | None = None
    """The largest N of the ``top:N`` entries (``top:3,top:5`` selects the top five), or None."""
    all: bool = False

    @classmethod
    def parse(cls, entries: Iterable[str]) -> SymbolSelection:
        """Parse the entries (selectors in any case, symbols exactly); ``ValueError`` saying what is expected."""
        explicit: list[str] = []
        tops: list[int] = []
        select_all = False
        for entry in entries:
            if not is_selector(entry):
                if entry not in explicit:
                    explicit.append(validate_symbol(entry))
                continue
            selector = entry.strip().lower()
            if selector == ALL_SELECTOR:
                select_all = True
            elif selector.startswith(TOP_PREFIX):
                tops.append(_top_count(selector))
            else:
                raise ValueError(f"unknown symbol selector {selector!r}: expected {SELECTOR_HELP}")
        if not explicit and not tops and not select_all:
            raise ValueError(f"symbols: at least one is needed ({SELECTOR_HELP})")
        return cls(tuple(explicit), max(tops) if tops else None, select_all)

    @property
    def entries(self) -> tuple[str, ...]:
        """The selection written as the setting (explicit symbols first): parsing it gives this selection again."""
        selectors = ((f"{TOP_PREFIX}{self.top}",) if self.top is not None else ()) + (
            (ALL_SELECTOR,) if self.all else ()
        )
        return self.explicit + selectors

    @property
    def has_selectors(self) -> bool:
        """Whether the exchange must be asked (only explicit symbols: never)."""
        return self.all or self.top is not None

    @property
    def needs_tickers(self) -> bool:
        """Whether resolving needs REST ``ticker/24hr`` (weight 40) besides ``exchangeInfo`` (weight 1)."""
        return self.top is not None and not self.all

    def select(
        self,
        exchange_info: Mapping[str, Any],
        tickers: Sequence[Mapping[str, Any]] = (),
        status_key: str = USDM.listing_status_key,
        volume_key: str = USDM.volume_key,
    ) -> Selected:
        """The symbols to record, given the bodies of ``exchangeInfo`` and (for ``top:N``) ``ticker/24hr``.

        Explicit symbols come first, in their order, whatever the exchange says; then the selected ones, by name.
        A contract trades when its ``status_key`` field is TRADING; ``top:N`` ranks the TRADING contracts by the
        ``volume_key`` field of their ticker (ties by name). The keys are the market's (``Market.listing_status_key``,
        ``Market.volume_key``; USDⓈ-M's unless given). Exchange symbols that break the symbol rule or name a delivery
        contract (``SELECTABLE_PATTERN``) are never selected, and are listed in ``skipped``. ``ValueError`` if an answer
        is not shaped like Binance's.
        """
        trading, skipped = _trading_symbols(exchange_info, status_key)
        chosen: set[str] = set()
        if self.all:
            chosen = set(trading)
        elif self.top is not None:
            volumes = _volumes(tickers, set(trading), volume_key)
            ranked = sorted(volumes, key=lambda symbol: (-volumes[symbol], symbol))
            chosen = set(ranked[: self.top])
        rest = sorted(chosen - set(self.explicit))
        return Selected(self.explicit + tuple(rest), tuple(sorted(skipped)))


def _trading_symbols(exchange_info: Mapping[str, Any], status_key: str) -> tuple[list[str], list[str]]:
    """The selectable symbols whose ``status_key`` is TRADING, and the TRADING ones a selector never chooses."""
    rows = exchange_info.get("symbols") if isinstance(exchange_info, Mapping) else None
    if not isinstance(rows, list):
        raise ValueError("exchangeInfo answer has no 'symbols' list")
    trading: list[str] = []
    skipped: list[str] = []
    for row in rows:
        if not isinstance(row, Mapping) or not isinstance(row.get("symbol"), str):
            raise ValueError(f"exchangeInfo answer has a symbol entry without a 'symbol': {str(row)[:200]}")
        if row.get(status_key) != TRADING:
            continue
        symbol = row["symbol"]
        selectable = SYMBOL_PATTERN.match(symbol) and SELECTABLE_PATTERN.match(symbol)
        (trading if selectable else skipped).append(symbol)
    return trading, skipped


def _volumes(tickers: Sequence[Mapping[str, Any]], eligible: set[str], volume_key: str) -> dict[str, Decimal]:
    """The ``volume_key`` of every eligible symbol with a ticker row (exact decimals, as Binance prints them)."""
    if not isinstance(tickers, list | tuple):
        raise ValueError("ticker/24hr answer is not a list")
    volumes: dict[str, Decimal] = {}
    for row in tickers:
        symbol = row.get("symbol") if isinstance(row, Mapping) else None
        if symbol not in eligible:
            continue
        try:
            volumes[symbol] = Decimal(str(row[volume_key]))
        except (KeyError, InvalidOperation):
            raise ValueError(f"ticker/24hr row of {symbol} has no readable {volume_key}: {str(row)[:200]}") from None
    return volumes

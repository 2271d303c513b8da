"""Listing and delisting contracts while the simulator runs: the statuses, checking a listing request, the instrument
of a newly listed symbol and the record of every change.

A symbol trades (exchangeInfo status ``TRADING``) from the start when ``--symbols`` names it, or from the next tick
after ``POST /admin/listing`` / ``Simulator.set_listing`` listed it; delisting sets it to ``SETTLING`` (it stops
trading at the next tick). The exchange owns the feeds and applies the change; this module only says what a request
means. Pure: no clock, no I/O.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from harvest_pipeline.markets import COINM
from harvest_pipeline.simulator.instruments import CATALOGUES, Instrument
from harvest_pipeline.symbols import TRADING, validate_symbol

SETTLING = "SETTLING"
STATUSES = (TRADING, SETTLING)
MAX_DECIMALS = 8
"""Tick and step sizes have at most 8 decimals (mark and index prices are printed with 8)."""
MIN_START_TICKS = 1_000
"""A start price of fewer ticks could walk the book's 150 seeded levels below zero."""
QUOTE_ASSETS = ("USDT", "USDC")
"""Suffixes split off a symbol to name its base asset (``DOGEUSDT`` -> ``DOGE``)."""
COINM_QUOTE_ASSET = "USD"
COINM_NEW_CONTRACT_SIZE = 10
"""USD per contract of a newly listed COIN-M contract (Binance's size for everything but BTC)."""
NEW_SYMBOL_DEFAULTS: dict[str, Any] = {
    "tick_size": "0.00001",
    "step_size": "1",
    "start_price": "0.10000",
    "mean_order_lots": 2_000,
    "events_per_second": 20.0,
}
"""The instrument of a symbol outside its market's catalogue (``instruments.CATALOGUES``): a cheap coin with modest
activity (it ranks below the built-in symbols by volume unless its fields say otherwise). On COIN-M it is a contract of
``COINM_NEW_CONTRACT_SIZE`` USD on the pair before the ``_`` (``DOGEUSD_PERP`` trades ``DOGEUSD``)."""
INSTRUMENT_FIELDS = tuple(NEW_SYMBOL_DEFAULTS)
_DECIMAL_TEXT = re.compile(r"^\d+(\.\d+)?$")


class ListingError(ValueError):
    """A listing request the simulator refuses; the admin API answers HTTP 400 with its message."""


class ListingChange(NamedTuple):
    """One status change of a symbol at ``at_ms`` on the exchange clock."""

    status: str
    at_ms: int

    def to_json(self) -> dict[str, Any]:
        """The accounting JSON of this change."""
        return {"status": self.status, "at_ms": self.at_ms}


class ListingRequest(NamedTuple):
    """A checked listing request: an upper-case symbol, a known status and the instrument fields given."""

    symbol: str
    status: str
    fields: dict[str, Any]


def parse_listing(body: Any) -> ListingRequest:
    """Check the JSON body of ``POST /admin/listing``: ``{"symbol", "status", ...instrument fields}``."""
    if not isinstance(body, dict):
        raise ListingError('a listing request is a JSON object like {"symbol": "DOGEUSDT", "status": "TRADING"}')
    fields = {key: value for key, value in body.items() if key not in ("symbol", "status")}
    return listing_request(body.get("symbol"), body.get("status"), fields)


def listing_request(symbol: Any, status: Any, fields: Mapping[str, Any]) -> ListingRequest:
    """Check one listing request (the admin body's parts, or ``Simulator.set_listing``'s arguments)."""
    if not isinstance(symbol, str):
        raise ListingError(f"'symbol' must be a string such as 'DOGEUSDT', got {symbol!r}")
    try:
        validate_symbol(symbol)
    except ValueError as exc:
        raise ListingError(str(exc)) from None
    if status not in STATUSES:
        raise ListingError(f"unknown status {status!r}; a listing sets {' or '.join(STATUSES)}")
    unknown = sorted(set(fields) - set(INSTRUMENT_FIELDS))
    if unknown:
        raise ListingError(f"unknown instrument fields {unknown}; a listing takes {', '.join(INSTRUMENT_FIELDS)}")
    if fields and status != TRADING:
        raise ListingError(f"instrument fields go with status {TRADING}, not {status}")
    return ListingRequest(symbol, status, dict(fields))


def listing_instrument(
    symbol: str, fields: Mapping[str, Any], market_name: str, listed: Instrument | None = None
) -> Instrument:
    """The instrument ``symbol`` trades as on ``market_name``: ``listed`` (its instrument from an earlier listing),
    else the built-in one, else ``NEW_SYMBOL_DEFAULTS``; with ``fields`` replacing parts of it (checked;
    ``ListingError`` otherwise)."""
    base = listed or CATALOGUES[market_name].get(symbol) or _new_instrument(symbol, market_name)
    spec = dataclasses.replace(base, **{name: _FIELD_CHECKS[name](name, value) for name, value in fields.items()})
    if listed is not None and spec != listed:
        raise ListingError(f"{symbol} keeps the instrument of its first listing ({_describe(listed)}) when relisted")
    for name in ("tick_size", "step_size"):
        text = getattr(spec, name)
        if "." in text and len(text.partition(".")[2]) > MAX_DECIMALS:
            raise ListingError(f"{name} {text!r} has more than {MAX_DECIMALS} decimals")
    if spec.start_ticks < MIN_START_TICKS:
        raise ListingError(
            f"start_price {spec.start_price!r} is only {spec.start_ticks} x tick_size {spec.tick_size}; "
            f"it must be at least {MIN_START_TICKS} ticks"
        )
    return spec


def _new_instrument(symbol: str, market_name: str) -> Instrument:
    if market_name == COINM.name:
        pair = symbol.partition("_")[0]
        base_asset = pair.removesuffix(COINM_QUOTE_ASSET) or pair
        return Instrument(
            symbol,
            base_asset,
            **NEW_SYMBOL_DEFAULTS,
            quote_asset=COINM_QUOTE_ASSET,
            pair=pair,
            contract_size=COINM_NEW_CONTRACT_SIZE,
        )
    base_asset = next((symbol[: -len(quote)] for quote in QUOTE_ASSETS if symbol.endswith(quote)), symbol)
    return Instrument(symbol, base_asset or symbol, **NEW_SYMBOL_DEFAULTS)


def _describe(spec: Instrument) -> str:
    return ", ".join(f"{name} {getattr(spec, name)!r}" for name in INSTRUMENT_FIELDS)


def _decimal_text(name: str, value: Any) -> str:
    """A positive decimal as the string the wire prints (``"0.010"`` keeps its 3 decimals; numbers are written out)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        value = format(Decimal(repr(value)), "f")
    if not isinstance(value, str) or not _DECIMAL_TEXT.match(value) or not Decimal(value) > 0:
        raise ListingError(f"{name} must be a positive decimal such as '0.001', got {value!r}")
    return value


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ListingError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def _positive_number(name: str, value: Any) -> float:
    try:
        number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise ListingError(f"{name} must be a number > 0, got {value!r}")
    return number


_FIELD_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "tick_size": _decimal_text,
    "step_size": _decimal_text,
    "start_price": _decimal_text,
    "mean_order_lots": _positive_int,
    "events_per_second": _positive_number,
}

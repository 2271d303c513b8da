"""The one rule for a symbol: checked wherever a symbol comes from input (flags, frames, ledgers) and names a path."""

from __future__ import annotations

import re

SYMBOL_REGEX = "[A-Z0-9]{2,20}"
"""Binance USD-M symbols: upper-case letters and digits (the SQL side uses this text with ``regexp_full_match``)."""
SYMBOL_PATTERN = re.compile(rf"^{SYMBOL_REGEX}$")


def validate_symbol(symbol: str) -> str:
    """``symbol`` if it follows the rule, else ``ValueError`` saying what is expected."""
    if not SYMBOL_PATTERN.match(symbol):
        raise ValueError(f"invalid symbol {symbol!r}: expected 2-20 letters or digits, upper case")
    return symbol

"""What a stored value must look like, and the quarantine reason when it does not (docs/compaction.md, table
"Quarantine rules").

One home for the plausibility rules: the SQL extraction of data frames (``extract.py``) and the Python ledger of
control records (``ledger.py``) both build their checks and reasons here, so a rule reads the same everywhere. A
reason names the field first (``E is before 2017-01-01``); a data kind prefixes its name (``prices: ...``) and a
control record its kind (``gap record: ...``). Reasons carry no values, so they group well in SQL; the quarantine
file keeps the line itself.
"""

from __future__ import annotations

from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MIN_TIME_MS = 1_483_228_800_000
"""2017-01-01T00:00:00Z: no exchange or receive time of a Binance futures recording is older."""
MIN_TIME_NS = MIN_TIME_MS * 1_000_000
MAX_AHEAD_MS = 86_400_000
"""An exchange time may be at most one day after the local receive time ``t`` (clock skew is seconds, not days)."""

NOT_INTEGER = "{key} is not an integer"
OUTSIDE_INT64 = "{key} is outside int64"
NEGATIVE = "{key} is negative"
TOO_EARLY = "{key} is before 2017-01-01"
TOO_LATE = "{key} is more than 1 day after the receive time t"
NOT_DECIMAL = "{key} is not an exact DECIMAL(18, 8)"
NOT_POSITIVE = "{key} is not positive"
NEGATIVE_AMOUNT = "{key} is negative"
NOT_CHOICE = "{key} is not one of {choices}"
DIFFERS = "{key} differs from {other}"
NOT_BOOL = "{key} is not true or false"
NOT_LEVELS = "{key} is not a list of [price, qty] pairs of exact DECIMAL(18, 8) numbers"
LEVEL_PRICE_NOT_POSITIVE = "{key} has a level whose price is not positive"
LEVEL_QTY_NEGATIVE = "{key} has a level whose qty is negative"
LEVEL_QTY_NOT_POSITIVE = "{key} has a level whose qty is not positive"
NOT_SYMBOL = "s (symbol) is not 2-20 upper-case letters or digits"
SYMBOL_NOT_STREAM = "s (symbol) does not match the symbol of the stream"
UNSUBSCRIBED = "s (stream) is not among the streams of its connection's connect record"


def missing(key: str) -> str:
    """The reason for an absent field."""
    return f"missing {key}"


def _text(template: str, key: str) -> str:
    return template.format(key=key)


def _lit(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def int_problem_sql(value: str, text: str, key: str, *, min_value: int = 0, recv_ns: str | None = None) -> str:
    """SQL naming the problem of the integer column ``value`` (``exact_int`` of the JSON text ``text``), else NULL.

    Ids and times are never negative; a time is also at least ``min_value`` and, with ``recv_ns`` (SQL of the
    receive time in ns), at most ``MAX_AHEAD_MS`` after it (judged only when the receive time is plausible itself:
    an absurd ``t`` is blamed on ``t`` alone).
    """
    checks = [f"WHEN {value} < 0 THEN {_lit(_text(NEGATIVE, key))}"]
    if min_value > 0:
        checks.append(f"WHEN {value} < {min_value} THEN {_lit(_text(TOO_EARLY, key))}")
    if recv_ns is not None:
        checks.append(
            f"WHEN {value} > {recv_ns} // 1000000 + {MAX_AHEAD_MS} AND {recv_ns} >= {MIN_TIME_NS} "
            f"THEN {_lit(_text(TOO_LATE, key))}"
        )
    malformed = (
        f"CASE WHEN regexp_full_match({text}, '-?[0-9]+') THEN {_lit(_text(OUTSIDE_INT64, key))} "
        f"ELSE {_lit(_text(NOT_INTEGER, key))} END"
    )
    return f"CASE {_when_null(value, text, key, malformed)} {' '.join(checks)} END"


def _when_null(value: str, text: str, key: str, malformed: str) -> str:
    """The ``WHEN`` branch shared by every check: no parsed value means the field is missing or malformed."""
    return f"WHEN {value} IS NULL THEN CASE WHEN {text} IS NULL THEN {_lit(missing(key))} ELSE {malformed} END"


def decimal_problem_sql(value: str, text: str, key: str, *, sign: str = "positive") -> str:
    """SQL naming the problem of an exact decimal, else NULL. ``sign``: ``positive`` (prices and order quantities are
    never 0 or negative on the exchange), ``non_negative`` (volumes, open interest, filled quantities: 0 happens) or
    ``any`` (a funding rate)."""
    malformed = _lit(_text(NOT_DECIMAL, key))
    bound = {
        "positive": f" WHEN {value} <= 0 THEN {_lit(_text(NOT_POSITIVE, key))}",
        "non_negative": f" WHEN {value} < 0 THEN {_lit(_text(NEGATIVE_AMOUNT, key))}",
        "any": "",
    }[sign]
    return f"CASE {_when_null(value, text, key, malformed)}{bound} END"


def choice_problem_sql(text: str, key: str, choices: tuple[str, ...]) -> str:
    """SQL naming a text field that is missing or not one of ``choices``, else NULL."""
    listed = ", ".join(map(_lit, choices))
    reason = NOT_CHOICE.format(key=key, choices="/".join(choices))
    return f"CASE WHEN {text} IS NULL THEN {_lit(missing(key))} WHEN {text} NOT IN ({listed}) THEN {_lit(reason)} END"


def same_text_problem_sql(text: str, key: str, other_text: str, other: str) -> str:
    """SQL naming a text field that is missing or differs from ``other_text`` (a field that repeats another)."""
    return (
        f"CASE WHEN {text} IS NULL THEN {_lit(missing(key))} "
        f"WHEN {text} IS DISTINCT FROM {other_text} THEN {_lit(DIFFERS.format(key=key, other=other))} END"
    )


def levels_problem_sql(value: str, text: str, key: str, *, zero_qty: bool) -> str:
    """SQL naming the problem of a ``[[price, qty], ...]`` list, else NULL. Prices are > 0; quantities are >= 0
    when ``zero_qty`` (a depth diff's "0" removes the level), else > 0."""
    bad_qty = "l.qty < 0" if zero_qty else "l.qty <= 0"
    qty_reason = LEVEL_QTY_NEGATIVE if zero_qty else LEVEL_QTY_NOT_POSITIVE
    worst = (
        f"list_min(list_transform({value}, lambda l: CASE WHEN l.price IS NULL OR l.qty IS NULL THEN 1 "
        f"WHEN l.price <= 0 THEN 2 WHEN {bad_qty} THEN 3 ELSE 4 END))"
    )
    return (
        f"CASE {_when_null(value, text, key, _lit(_text(NOT_LEVELS, key)))} "
        f"ELSE CASE {worst} WHEN 1 THEN {_lit(_text(NOT_LEVELS, key))} "
        f"WHEN 2 THEN {_lit(_text(LEVEL_PRICE_NOT_POSITIVE, key))} WHEN 3 THEN {_lit(_text(qty_reason, key))} END END"
    )


def bool_problem_sql(value: str, text: str, key: str) -> str:
    """SQL naming the problem of a JSON boolean, else NULL."""
    return f"CASE {_when_null(value, text, key, _lit(_text(NOT_BOOL, key)))} END"


def present_problem_sql(text: str, key: str) -> str:
    """SQL naming a missing text field, else NULL."""
    return f"CASE WHEN {text} IS NULL THEN {_lit(missing(key))} END"


def symbol_problem_sql(symbol: str, text: str, stream: str) -> str:
    """SQL naming the problem of a payload symbol: missing, malformed, or not the symbol of the record's stream."""
    return (
        f"CASE WHEN {symbol} IS NULL THEN CASE WHEN {text} IS NULL THEN {_lit(missing('s (symbol)'))} "
        f"ELSE {_lit(NOT_SYMBOL)} END "
        f"WHEN lower({symbol}) <> split_part({stream}, '@', 1) THEN {_lit(SYMBOL_NOT_STREAM)} END"
    )


def unsubscribed_problem_sql(conn_id: str, stream: str, subscriptions: dict[str, set[str]]) -> str:
    """SQL naming a frame whose connection is in ``subscriptions`` (connection id -> streams of its connect record)
    but whose stream is not among that connection's streams, else NULL."""
    if not subscriptions:
        return "NULL"
    branches = []
    for conn, streams in sorted(subscriptions.items()):
        listed = ", ".join(map(_lit, sorted(streams)))
        branches.append(f"WHEN {_lit(conn)} THEN {f'{stream} NOT IN ({listed})' if streams else 'true'}")
    return f"CASE WHEN CASE {conn_id} {' '.join(branches)} END THEN {_lit(UNSUBSCRIBED)} END"


def int_problem(key: str, value: Any, *, min_value: int = 0) -> str | None:
    """The problem of a decoded JSON integer that must lie in ``min_value .. INT64_MAX``, else None."""
    if value is None:
        return missing(key)
    problem = int64_problem(key, value)
    if problem is not None:
        return problem
    if value < 0:
        return _text(NEGATIVE, key)
    if value < min_value:
        return _text(TOO_EARLY, key)
    return None


def int64_problem(key: str, value: Any) -> str | None:
    """The problem of an optional integer that must fit int64 (any sign; absent or null is fine), else None."""
    if value is None:
        return None
    if type(value) is int:
        return None if INT64_MIN <= value <= INT64_MAX else _text(OUTSIDE_INT64, key)
    if type(value) is float and abs(value) >= 2**63:  # orjson decodes integers beyond 64 bits as floats
        return _text(OUTSIDE_INT64, key)
    return _text(NOT_INTEGER, key)


def plausible_recv_ns(value: int | None) -> bool:
    """Whether a receive time in ns can date a row (2017 or later, within int64)."""
    return value is not None and MIN_TIME_NS <= value <= INT64_MAX

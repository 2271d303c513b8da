"""Reading the query of a REST request the way Binance does, and Binance's error codes for what it refuses.

Every refusal is a ``RestError`` carrying the HTTP status and Binance's code: 400 with a ``-11xx`` parameter code,
401 with ``-2014`` for a missing API key; a forced failure (the ``rest_status`` fault) carries the code Binance sends
with that status (``FORCED_ERRORS``).
"""

from __future__ import annotations

from collections.abc import Mapping

API_KEY_HEADER = "X-MBX-APIKEY"
TOO_MANY_REQUESTS = (-1003, "Too many requests; current request weight budget is used up, back off.")
INTERNAL_ERROR = (-1001, "Internal error; unable to process your request. Please try again.")
FORCED_ERRORS: dict[int, tuple[int, str]] = {
    418: (-1003, "Way too many requests; IP banned for continuing to send requests after 429."),
    429: TOO_MANY_REQUESTS,
}
"""Status to Binance's code and message; any other status a fault forces (the 5xx ones) is ``INTERNAL_ERROR``."""


class RestError(Exception):
    """A request Binance refuses: HTTP ``status`` (400 unless told) with Binance's ``code``."""

    def __init__(self, code: int, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.status = code, status


def forced_error(status: int) -> tuple[int, str]:
    """The code and message Binance answers with ``status`` (418/429: -1003, 5xx: -1001)."""
    return FORCED_ERRORS.get(status, INTERNAL_ERROR)


def integer(query: Mapping[str, str], key: str, default: int | None) -> int:
    """Parameter ``key`` as an integer; ``default`` when absent (-1102 when there is none), -1100 when not one."""
    value = query.get(key)
    if value is None:
        if default is None:
            raise RestError(-1102, f"Mandatory parameter '{key}' was not sent, was empty/null, or malformed.")
        return default
    try:
        return int(value)
    except ValueError:
        raise RestError(-1100, f"Illegal characters found in parameter '{key}'; legal range is integers.") from None


def optional_integer(query: Mapping[str, str], key: str) -> int | None:
    """Parameter ``key`` as an integer, or None when absent."""
    return integer(query, key, None) if key in query else None


def limit_of(query: Mapping[str, str], default: int, maximum: int) -> int:
    """The ``limit`` parameter, 1..``maximum``; -1130 outside."""
    value = integer(query, "limit", default)
    if not 1 <= value <= maximum:
        raise RestError(-1130, f"Data sent for parameter 'limit' is not valid: {value} is not within 1..{maximum}.")
    return value


def required(query: Mapping[str, str], key: str) -> str:
    """A mandatory text parameter; -1102 when absent or empty."""
    value = query.get(key)
    if not value:
        raise RestError(-1102, f"Mandatory parameter '{key}' was not sent, was empty/null, or malformed.")
    return value


def time_window(query: Mapping[str, str], max_window_ms: int | None) -> tuple[int | None, int | None]:
    """``startTime`` and ``endTime`` (epoch ms, either may be None): -1128 when ``fromId`` comes with either, -1127
    when both are sent and more than ``max_window_ms`` apart (exactly one hour is allowed, as Binance allows it)."""
    start_ms, end_ms = optional_integer(query, "startTime"), optional_integer(query, "endTime")
    if "fromId" in query and (start_ms is not None or end_ms is not None):
        raise RestError(-1128, "Combination of optional parameters invalid.")
    if max_window_ms is not None and start_ms is not None and end_ms is not None and end_ms - start_ms > max_window_ms:
        raise RestError(-1127, "More than 1 hours between startTime and endTime.")
    return start_ms, end_ms


def require_api_key(headers: Mapping[str, str]) -> None:
    """-2014 (HTTP 401) unless the request carries a non-empty ``X-MBX-APIKEY`` (any key is accepted)."""
    if not headers.get(API_KEY_HEADER):
        raise RestError(-2014, "API-key format invalid.", status=401)

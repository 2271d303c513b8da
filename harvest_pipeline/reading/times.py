"""Time arguments of the reading API: datetimes, dates and ISO strings, all UTC, as half-open millisecond ranges.

A ``start`` is the first instant included; an ``end`` the first instant excluded. A **date** (``date(2026, 11, 26)``
or ``"2026-11-26"``) stands for its whole UTC day on either side: ``start="2026-11-25", end="2026-11-26"`` is two
days. A datetime or an ISO string with a time is that instant (naive ones are UTC; an offset is converted).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

TimeArg = dt.datetime | dt.date | str | None
DAY_MS = 86_400_000


@dataclass(frozen=True)
class TimeRange:
    """``[start_ms, end_ms)`` in epoch milliseconds (None: unbounded on that side)."""

    start_ms: int | None
    end_ms: int | None

    def days(self, first: dt.date, last: dt.date) -> list[dt.date]:
        """The UTC dates between ``first`` and ``last`` (the store's) that the range touches."""
        if self.start_ms is not None:
            first = max(first, _date_of(self.start_ms))
        if self.end_ms is not None:
            last = min(last, _date_of(self.end_ms - 1))
        return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]

    def sql(self, column: str) -> str:
        """SQL keeping the rows whose ``column`` (epoch ms) lies in the range; ``true`` when unbounded."""
        bounds = []
        if self.start_ms is not None:
            bounds.append(f"{column} >= {self.start_ms}")
        if self.end_ms is not None:
            bounds.append(f"{column} < {self.end_ms}")
        return " AND ".join(bounds) or "true"


def time_range(start: TimeArg, end: TimeArg) -> TimeRange:
    """The range from ``start`` to ``end`` (see the module docstring); ``ValueError`` when unreadable or empty."""
    start_ms = None if start is None else _instant_ms(start, "start", whole_day_end=False)
    end_ms = None if end is None else _instant_ms(end, "end", whole_day_end=True)
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise ValueError(f"end {end!r} is not after start {start!r}")
    return TimeRange(start_ms, end_ms)


def _instant_ms(value: dt.datetime | dt.date | str, name: str, whole_day_end: bool) -> int:
    if isinstance(value, str):
        value = _parse(value, name)
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, dt.date):
        midnight = dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
        return int(midnight.timestamp() * 1000) + (DAY_MS if whole_day_end else 0)
    raise ValueError(f"{name} {value!r} is not a datetime, a date or an ISO string")


def _parse(text: str, name: str) -> dt.datetime | dt.date:
    text = text.strip()
    try:
        if len(text) == 10:
            return dt.date.fromisoformat(text)
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{name} {text!r} is not an ISO date or time: expected e.g. 2026-11-26 or 2026-11-26T14:30:00Z"
        ) from None


def _date_of(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).date()

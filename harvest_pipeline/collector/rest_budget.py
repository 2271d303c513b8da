"""The request-weight budget every REST caller of one collector shares (depth snapshots, trade backfill, open
interest), and the budgeted GET they use.

Binance counts request weight per IP and minute (``X-MBX-USED-WEIGHT-1M``); going over it earns HTTP 429, and
ignoring a 429 earns 418, an IP ban. So the collector keeps one sliding one-minute window of the weight it spent,
believes the server's own figure when it is higher (other clients may share the IP), and pauses every caller after
a 429/418 for ``Retry-After``. A caller may be held to a share of the budget, so a large backfill never takes the
weight a depth snapshot needs.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import aiohttp

from harvest_pipeline.collector.connection import parse_retry_after

WEIGHT_WINDOW_S = 60.0
DEFAULT_RETRY_AFTER_S = 60.0


class WeightBudget:
    """A sliding one-minute window of request weight spent by this process, and the pause a 429/418 imposed."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.paused_until = 0.0
        """``time.monotonic()`` before which nobody sends a request (set by a 429/418)."""
        self._spent: deque[tuple[float, int]] = deque()
        self._server_used = 0
        self._server_seen_at = 0.0

    def wait_s(self, weight: int, now: float, limit: int | None = None) -> float:
        """Seconds to wait before spending ``weight`` (0 when it fits now) within ``limit`` (default: the budget)."""
        cap = self.per_minute if limit is None else min(limit, self.per_minute)
        if self.paused_until > now:
            return self.paused_until - now
        while self._spent and now - self._spent[0][0] >= WEIGHT_WINDOW_S:
            self._spent.popleft()
        if self._server_used + weight > cap and now - self._server_seen_at < WEIGHT_WINDOW_S:
            return WEIGHT_WINDOW_S - (now - self._server_seen_at)
        used = sum(spent for _, spent in self._spent)
        if used + weight <= cap or not self._spent:
            return 0.0
        # the oldest spending that must expire before ``weight`` fits
        excess = used + weight - cap
        for spent_at, spent in self._spent:
            excess -= spent
            if excess <= 0:
                return max(0.001, WEIGHT_WINDOW_S - (now - spent_at))
        return WEIGHT_WINDOW_S

    def spend(self, weight: int, now: float) -> None:
        """Account for a request just sent."""
        self._spent.append((now, weight))
        self._server_used += weight  # until the server's next figure, assume it counted this request too

    def server_reports(self, used: int, now: float) -> None:
        """Take the server's ``X-MBX-USED-WEIGHT-1M`` into account (other clients may share the IP)."""
        self._server_used = used
        self._server_seen_at = now

    def pause(self, seconds: float, now: float) -> None:
        """Stop every caller for ``seconds`` (a 429/418 with its ``Retry-After``)."""
        self.paused_until = max(self.paused_until, now + seconds)


@dataclass(frozen=True)
class RestAnswer:
    """One budgeted REST request's outcome: the status (None when no answer came: network error or timeout), the
    body, the ``Retry-After`` of a 429/418, and ``error`` when no answer came."""

    status: int | None
    body: bytes
    retry_after_s: float | None
    error: str | None = None


async def budgeted_get(
    session: aiohttp.ClientSession, url: str, params: dict[str, str], budget: WeightBudget, weight: int
) -> RestAnswer:
    """``GET url`` charged to ``budget`` at ``weight``, noting the server's ``X-MBX-USED-WEIGHT-1M``; never raises
    for a network problem or a timeout (the session's)."""
    budget.spend(weight, time.monotonic())
    try:
        async with session.get(url, params=params) as response:
            body = await response.read()
            used = response.headers.get("X-MBX-USED-WEIGHT-1M")
            if used is not None and used.isdigit():
                budget.server_reports(int(used), time.monotonic())
            return RestAnswer(response.status, body, parse_retry_after(response.headers.get("Retry-After")))
    except (aiohttp.ClientError, TimeoutError) as exc:
        return RestAnswer(None, b"", None, f"{type(exc).__name__}: {exc}")

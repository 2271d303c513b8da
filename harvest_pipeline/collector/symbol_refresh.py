"""The selectors of ``--symbols`` (``top:N``, ``all``), resolved from REST at start and every ``symbols_refresh_s``.

Each resolution asks the market's REST ``exchangeInfo`` (``/fapi/v1/exchangeInfo`` …; weight 1: which contracts are
TRADING, by the market's ``listing_status_key``) and, for ``top:N``, ``ticker/24hr`` (weight 40: every contract's 24 h
volume, by the market's ``volume_key``), through the request-weight budget the other REST callers share
(``rest_budget``); ``harvest_pipeline.symbols.SymbolSelection.select`` turns the answers into symbols. When they differ
from the symbols recorded, the collector is told (``apply``) and changes what it subscribes (``shard_set``). A failed
resolution changes nothing: the symbols recorded stay (at start: the explicit ones, possibly none), it is retried with
capped backoff, and /healthz says why until one succeeds. A watchdog firing on a selected symbol asks for an early
resolution (at most one per ``EARLY_REFRESH_GAP_S``): a delisted contract's streams fall silent, and it is then dropped
within a watchdog period instead of at the next scheduled refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.metrics import CollectorMetrics
from harvest_pipeline.collector.rest_budget import DEFAULT_RETRY_AFTER_S, WeightBudget, budgeted_get
from harvest_pipeline.collector.shard import backoff_delay
from harvest_pipeline.symbols import Selected, SymbolSelection

log = logging.getLogger(__name__)

EXCHANGE_INFO_ENDPOINT = "exchangeInfo"
EXCHANGE_INFO_WEIGHT = 1
TICKER_24HR_ENDPOINT = "ticker/24hr"
TICKER_24HR_WEIGHT = 40
"""Weight of ``ticker/24hr`` without a symbol (all of them)."""
RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 60.0
EARLY_REFRESH_GAP_S = 300.0
"""The least time between two resolutions asked for by the watchdog (each costs up to 41 weight)."""

ApplySymbols = Callable[[tuple[str, ...]], Awaitable[None]]


class SymbolResolutionError(Exception):
    """The exchange's answers could not be turned into symbols (no answer, an HTTP error, an unexpected body)."""


class SymbolRefresher:
    """Resolves the selection now and then, and hands changed symbol sets to ``apply``."""

    def __init__(
        self,
        config: CollectorConfig,
        budget: WeightBudget,
        metrics: CollectorMetrics,
        rng: random.Random,
        clock: Callable[[], int] = time.time_ns,
    ):
        self.selection: SymbolSelection = config.symbol_selection
        self._config = config
        self._budget = budget
        self._metrics = metrics
        self._rng = rng
        self._clock = clock
        self.resolved: Selected | None = None
        self.resolved_ns: int | None = None
        self.failures_in_a_row = 0
        self.failing_since_ns: int | None = None
        self.last_error: str | None = None
        self._retry_in_s = 0.0
        self._wake = asyncio.Event()
        self._early_at = -EARLY_REFRESH_GAP_S

    @property
    def weight(self) -> int:
        """The request weight of one resolution."""
        return EXCHANGE_INFO_WEIGHT + (TICKER_24HR_WEIGHT if self.selection.needs_tickers else 0)

    async def refresh(self, apply: ApplySymbols) -> bool:
        """Resolve once; ``apply`` the symbols if that worked (``apply`` decides whether anything changed)."""
        try:
            selected = await self.resolve()
        except SymbolResolutionError as exc:
            self._failed(str(exc))
            return False
        self._succeeded(selected)
        await apply(selected.symbols)
        return True

    async def run(self, apply: ApplySymbols) -> None:
        """Resolve every ``symbols_refresh_s`` (after a failure: with backoff), until cancelled."""
        while True:
            delay = self._config.symbols_refresh_s if self.failures_in_a_row == 0 else self._retry_in_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()  # an early request arriving during this resolution makes the next one come at once
            await self.refresh(apply)

    def request_refresh(self, reason: str) -> None:
        """Resolve soon (a selected stream fell silent: perhaps delisted), at most once per ``EARLY_REFRESH_GAP_S``."""
        now = time.monotonic()
        if now - self._early_at >= EARLY_REFRESH_GAP_S:
            self._early_at = now
            log.info("symbol selection %s resolved early: %s", ",".join(self.selection.entries), reason)
            self._wake.set()

    async def resolve(self) -> Selected:
        """The symbols the selection stands for now; ``SymbolResolutionError`` saying what went wrong."""
        timeout = aiohttp.ClientTimeout(total=self._config.rest_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            exchange_info = await self._get_json(session, EXCHANGE_INFO_ENDPOINT, EXCHANGE_INFO_WEIGHT)
            tickers = (
                await self._get_json(session, TICKER_24HR_ENDPOINT, TICKER_24HR_WEIGHT)
                if self.selection.needs_tickers
                else []
            )
        exchange = self._config.exchange
        try:
            return self.selection.select(exchange_info, tickers, exchange.listing_status_key, exchange.volume_key)
        except ValueError as exc:
            raise SymbolResolutionError(str(exc)) from None

    async def _get_json(self, session: aiohttp.ClientSession, endpoint: str, weight: int) -> Any:
        path = self._config.exchange.rest_path(endpoint)
        wait = self._budget.wait_s(weight, time.monotonic())
        if wait > 0:
            log.info("symbol selection waits %.1f s for request weight", wait)
            await asyncio.sleep(wait)
        answer = await budgeted_get(session, self._config.rest_url(endpoint), {}, self._budget, weight)
        if answer.status is None:
            raise SymbolResolutionError(f"{path}: {answer.error or 'no answer'}")
        if answer.status in (418, 429):
            pause = answer.retry_after_s if answer.retry_after_s is not None else DEFAULT_RETRY_AFTER_S
            self._budget.pause(pause, time.monotonic())
            raise SymbolResolutionError(f"{path}: HTTP {answer.status}; REST paused {pause:.0f} s")
        if answer.status != 200:
            raise SymbolResolutionError(f"{path}: HTTP {answer.status}: {answer.body[:200]!r}")
        try:
            return orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            raise SymbolResolutionError(f"{path}: answer is not JSON: {answer.body[:200]!r}") from None

    def _succeeded(self, selected: Selected) -> None:
        if self.failures_in_a_row:
            log.info("symbol selection resolved again after %d failure(s)", self.failures_in_a_row)
        if selected.skipped and (self.resolved is None or self.resolved.skipped != selected.skipped):
            shown = ", ".join(selected.skipped[:10]) + (" ..." if len(selected.skipped) > 10 else "")
            log.info("%d trading contract(s) skipped, not named like a symbol: %s", len(selected.skipped), shown)
        self.resolved, self.resolved_ns = selected, self._clock()
        self.failures_in_a_row, self.failing_since_ns, self.last_error = 0, None, None
        self._metrics.symbol_refreshes.labels("ok").inc()

    def _failed(self, error: str) -> None:
        self._retry_in_s = backoff_delay(self.failures_in_a_row, RETRY_INITIAL_S, RETRY_MAX_S, self._rng)
        self.failures_in_a_row += 1
        if self.failing_since_ns is None:
            self.failing_since_ns = self._clock()
        self.last_error = error
        self._metrics.symbol_refreshes.labels("error").inc()
        log.warning(
            "cannot resolve symbol selection %s: %s (will retry in %.1f s; %s)",
            ",".join(self.selection.entries),
            error,
            self._retry_in_s,
            self._keeping(),
        )

    def _keeping(self) -> str:
        if self.resolved is not None:
            return f"recording the {len(self.resolved.symbols)} symbols resolved before"
        if self.selection.explicit:
            return f"recording only the explicit symbols {','.join(self.selection.explicit)}"
        return "recording nothing until it succeeds"

    def problem(self) -> str | None:
        """Why /healthz is not ok because of the selection, or None."""
        if self.failures_in_a_row == 0:
            return None
        since = (self._clock() - (self.failing_since_ns or self._clock())) / 1e9
        return (
            f"symbol selection {','.join(self.selection.entries)} not resolved for {since:.1f} s "
            f"({self.failures_in_a_row} attempt(s)): {self.last_error}; retrying in {self._retry_in_s:.1f} s, "
            f"{self._keeping()}"
        )

    def health(self) -> dict[str, object]:
        """The selection's part of /healthz."""
        now = self._clock()
        return {
            "selection": list(self.selection.entries),
            "resolved": None if self.resolved is None else list(self.resolved.symbols),
            "resolved_age_s": None if self.resolved_ns is None else round((now - self.resolved_ns) / 1e9, 3),
            "skipped": 0 if self.resolved is None else len(self.resolved.skipped),
            "refresh_s": self._config.symbols_refresh_s,
            "failures_in_a_row": self.failures_in_a_row,
            "last_error": self.last_error,
        }

"""REST depth snapshots: one symbol at a time, within a request-weight budget, never blocking a reader.

Readers call ``request(symbol, reason)`` (a set insert). A single task works through the requests: it waits for weight
budget (``rest_budget``, shared with the trade backfill), fetches the market's REST ``depth`` (``/fapi/v1/depth``,
``/dapi/v1/depth``, ``/api/v3/depth``) and stores the body verbatim as a ``snapshot`` record (a spot body carries no
event or transaction time; compaction takes the receive time). HTTP 429/418 pauses all snapshots for ``Retry-After``
(recorded as a ``gap`` record: that symbol's book stays unsynchronised meanwhile); other failures are retried per symbol
with capped backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time

import aiohttp

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.intake import Intake
from harvest_pipeline.collector.rest_budget import DEFAULT_RETRY_AFTER_S, WeightBudget, budgeted_get
from harvest_pipeline.collector.shard import backoff_delay
from harvest_pipeline.markets import Market
from harvest_pipeline.segments import encode_control, encode_snapshot

log = logging.getLogger(__name__)


def depth_weight(limit: int) -> int:
    """Request weight of ``GET /fapi/v1/depth`` for a given ``limit`` (Binance USD-M table)."""
    if limit <= 50:
        return 2
    if limit <= 100:
        return 5
    if limit <= 500:
        return 10
    return 20


def snapshot_weight(exchange: Market, limit: int) -> int:
    """Request weight of a depth snapshot of ``limit`` levels on ``exchange``: the market's ``snapshot_weight`` at its
    ``snapshot_limit``, a smaller limit charged by the USD-M table scaled to meet that, rounded up. Exact on USDⓈ-M and
    COIN-M (one table); on spot, whose small snapshots cost less, an over-estimate, which only spends more carefully."""
    scale = exchange.snapshot_weight / depth_weight(exchange.snapshot_limit)
    return math.ceil(depth_weight(limit) * scale)


class SnapshotFetcher:
    """Fetches depth snapshots on request, one at a time, oldest request first."""

    def __init__(self, config: CollectorConfig, intake: Intake, conn_id: str, rng: random.Random, budget: WeightBudget):
        self._config = config
        self._intake = intake
        self.conn_id = conn_id
        self._rng = rng
        self._seq = 0
        self._pending: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._failures: dict[str, int] = {}
        self._not_before: dict[str, float] = {}
        self._budget = budget
        self._weight = snapshot_weight(config.exchange, config.snapshot_limit)
        self._depth_kind = next((k for k in config.stream_kinds if k.startswith("depth")), "depth")
        self._has_diffs = any(kind.split("@")[0] == "depth" for kind in config.stream_kinds)
        self.symbols: list[str] = []
        """The symbols whose diff-depth stream is recorded (snapshots of others are never fetched)."""

    def add_symbols(self, symbols: list[str]) -> None:
        """Serve the books of symbols that started being recorded (their first diffs ask for the snapshot)."""
        if self._has_diffs:
            self.symbols += [symbol for symbol in symbols if symbol not in self.symbols]

    def remove_symbols(self, symbols: list[str]) -> None:
        """Forget symbols no longer recorded, with any snapshot still pending for them."""
        for symbol in symbols:
            if symbol in self.symbols:
                self.symbols.remove(symbol)
            self._pending.pop(symbol, None)
            self._failures.pop(symbol, None)
            self._not_before.pop(symbol, None)

    def request(self, symbol: str, reason: str) -> None:
        """Ask for a snapshot of ``symbol`` (deduplicated: one pending request per symbol)."""
        if symbol not in self._pending and symbol in self.symbols:
            self._pending[symbol] = reason
            self._wake.set()

    async def refresh_periodically(self) -> None:
        """Ask for a snapshot of every symbol with depth diffs once per ``snapshot_refresh_s``, one symbol after the
        other at even spacing, so the symbols never refresh together (cancelled at shutdown). The symbols of each
        round are those recorded when it starts."""
        interval = self._config.snapshot_refresh_s
        if interval <= 0 or not self._has_diffs:
            return
        while True:
            symbols = list(self.symbols)
            if not symbols:
                await asyncio.sleep(interval)
            for symbol in symbols:
                await asyncio.sleep(interval / len(symbols))  # first: the start-up snapshots are fresh
                self.request(symbol, "periodic refresh")  # ignored if the symbol was removed meanwhile

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def run(self) -> None:
        """Serve requests forever (cancelled at shutdown)."""
        timeout = aiohttp.ClientTimeout(total=self._config.rest_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                symbol = self._next_ready()
                if symbol is None:
                    self._wake.clear()
                    wait = self._seconds_to_next()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                    continue
                budget_wait = self._budget.wait_s(self._weight, time.monotonic())
                if budget_wait > 0:
                    log.info("depth snapshots paused %.1f s to stay within the request-weight budget", budget_wait)
                    await asyncio.sleep(budget_wait)
                    continue
                reason = self._pending.pop(symbol)
                await self._fetch(session, symbol, reason)

    def _next_ready(self) -> str | None:
        now = time.monotonic()
        for symbol in self._pending:
            if self._not_before.get(symbol, 0.0) <= now:
                return symbol
        return None

    def _seconds_to_next(self) -> float | None:
        if not self._pending:
            return None
        now = time.monotonic()
        return max(0.01, min(self._not_before.get(s, now) for s in self._pending) - now)

    async def _fetch(self, session: aiohttp.ClientSession, symbol: str, reason: str) -> None:
        url = self._config.rest_url("depth")
        params = {"symbol": symbol, "limit": str(self._config.snapshot_limit)}
        requested_ns = self._intake.clock()
        answer = await budgeted_get(session, url, params, self._budget, self._weight)
        if answer.status is None:
            self._retry_later(symbol, reason, answer.error or "no answer")
        elif answer.status == 200:
            self._failures.pop(symbol, None)
            self._not_before.pop(symbol, None)
            self._intake.metrics.snapshots.labels("ok").inc()
            self._intake.emit(
                encode_snapshot(
                    self._intake.clock(),
                    self.conn_id,
                    self._next_seq(),
                    symbol,
                    answer.body,
                    limit=self._config.snapshot_limit,
                    reason=reason,
                    requested_ns=requested_ns,
                )
            )
            log.info("depth snapshot of %s stored (%s, %d bytes)", symbol, reason, len(answer.body))
        elif answer.status in (418, 429):
            self._rate_limited(symbol, reason, answer.status, answer.retry_after_s)
        else:
            self._retry_later(symbol, reason, f"HTTP {answer.status}: {answer.body[:200]!r}")

    def _rate_limited(self, symbol: str, reason: str, status: int, retry_after: float | None) -> None:
        pause = retry_after if retry_after is not None else DEFAULT_RETRY_AFTER_S
        self._intake.metrics.snapshots.labels(f"http_{status}").inc()
        stream = f"{symbol.lower()}@{self._depth_kind}"
        self._intake.emit(
            encode_control(
                self._intake.clock(),
                self.conn_id,
                self._next_seq(),
                "gap",
                stream,
                reason=f"depth snapshot rejected: HTTP {status}",
                retry_after_s=pause,
            )
        )
        log.warning("depth snapshot of %s rejected with HTTP %d; all snapshots paused %.1f s", symbol, status, pause)
        self._budget.pause(pause, time.monotonic())
        self._pending[symbol] = reason

    def _retry_later(self, symbol: str, reason: str, error: str) -> None:
        failures = self._failures.get(symbol, 0)
        self._failures[symbol] = failures + 1
        delay = backoff_delay(failures, 1.0, self._config.snapshot_retry_max_s, self._rng)
        self._intake.metrics.snapshots.labels("error").inc()
        log.warning("depth snapshot of %s failed: %s (will retry in %.1f s)", symbol, error, delay)
        self._pending[symbol] = reason
        self._not_before[symbol] = time.monotonic() + delay

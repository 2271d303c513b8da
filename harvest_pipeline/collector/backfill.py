"""Live trade backfill: every aggTrade hole the collector knows of is filled from REST, off the readers' path.

Holes come from the id trackers (a jump, a reconnect, a stalled stream, the ids missed while the collector was down) and
from lost records (the writer's loss report carries the trade ids of the aggTrade lines it could not write). One task
works through them oldest first, one page of the market's REST ``aggTrades`` (``/fapi/v1/aggTrades``,
``/dapi/v1/aggTrades``, ``/api/v3/aggTrades``) at a time, within a share of the request-weight budget it shares with the
depth snapshots. Every request leaves a ``backfill`` record (request time, ``fromId``, HTTP status, weight, what it
stored) and each trade of the hole one ``rest_trade`` record pointing at it. What the exchange cannot give is declared
in a ``backfill`` record with ``outcome: declared`` and the reason: ids an answer skipped (never issued, or past its
history), or a hole still failing after ``backfill_max_attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable

import aiohttp

from harvest_pipeline.backfill.holes import AGG_TRADES_WEIGHT, Hole, HoleQueue
from harvest_pipeline.backfill.rest import PageAnswer, fetch_page
from harvest_pipeline.backfill.settle import BackfillRecords
from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.intake import Intake
from harvest_pipeline.collector.rest_budget import WeightBudget
from harvest_pipeline.collector.shard import backoff_delay

log = logging.getLogger(__name__)


class TradeBackfiller:
    """Fills aggTrade holes from REST, one page at a time, never blocking a reader."""

    def __init__(self, config: CollectorConfig, intake: Intake, conn_id: str, rng: random.Random, budget: WeightBudget):
        self._config = config
        self._intake = intake
        self.conn_id = conn_id
        self._rng = rng
        self._budget = budget
        self._cap = max(AGG_TRADES_WEIGHT, int(config.rest_weight_per_minute * config.backfill_weight_share))
        self._path = config.exchange.rest_path("aggTrades")
        self._spacing_s = 60.0 * AGG_TRADES_WEIGHT / self._cap
        """Pages are spread evenly over the minute (2 s apart at the default 600 weight), never sent in a burst: each
        costs the event loop ~2 ms, and a burst of them would delay the frames behind it."""
        self._next_page_at = 0.0
        self.queue = HoleQueue(config.backfill_max_holes)
        self._wake = asyncio.Event()
        self._records = BackfillRecords(conn_id, intake.clock)
        self._streams: dict[str, str] = {}
        """Symbol -> its aggTrade stream, for every symbol recorded since start: holes found while a symbol was
        recorded are still filled after it stops being recorded (the exchange keeps serving its history)."""
        self.add_symbols(entry.symbol for entry in intake.entries.values())

    def add_symbols(self, symbols: Iterable[str]) -> None:
        """Accept the holes of symbols that started being recorded (those with an aggTrade stream)."""
        for symbol in symbols:
            entry = self._intake.entries.get(f"{symbol.lower()}@aggTrade".encode())
            if entry is not None:
                self._streams[symbol] = entry.name

    def request(self, symbol: str, first_id: int, last_id: int, cause: str) -> None:
        """Queue ids ``first_id..last_id`` of ``symbol`` for filling (on the asyncio thread)."""
        if symbol not in self._streams or last_id < first_id:
            return
        self.queue.add(Hole(symbol, first_id, last_id, cause))
        self._intake.metrics.backfill_holes_pending.set(len(self.queue))
        self._wake.set()

    async def run(self) -> None:
        """Work through the holes forever (cancelled at shutdown)."""
        timeout = aiohttp.ClientTimeout(total=self._config.rest_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                now = time.monotonic()
                hole = self.queue.next_ready(now)
                if hole is None:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.queue.seconds_to_next(now))
                    continue
                wait = max(self._next_page_at - now, self._budget.wait_s(AGG_TRADES_WEIGHT, now, self._cap))
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                self._budget.spend(AGG_TRADES_WEIGHT, now)
                self._next_page_at = now + self._spacing_s
                answer = await fetch_page(
                    session, self._config.rest_base, hole.symbol, hole.first_id, self._intake.clock, self._path
                )
                if answer.used_weight is not None:
                    self._budget.server_reports(answer.used_weight, time.monotonic())
                self._settle(hole, answer)
                self._intake.metrics.backfill_holes_pending.set(len(self.queue))
                await asyncio.sleep(0)  # let the readers run between pages

    def _settle(self, hole: Hole, answer: PageAnswer) -> None:
        """Store what the answer brought and move the hole on: filled, continued, retried or declared."""
        stream = self._streams[hole.symbol]
        metrics = self._intake.metrics
        settlement = self._records.settle([hole], answer, stream)
        metrics.backfill_requests.labels(settlement.label).inc()
        self._intake.emit_many(settlement.lines)
        metrics.backfill_trades.inc(settlement.stored)
        for first_id, last_id, reason in settlement.declared:
            self._count_declared(hole, first_id, last_id, reason)
        if settlement.pause_s is not None:
            self._budget.pause(settlement.pause_s, time.monotonic())
            log.warning("trade backfill rejected with HTTP %d; REST paused %.1f s", answer.status, settlement.pause_s)
        elif settlement.retry is not None:
            self._retry_or_declare(hole, stream, settlement.retry)
        elif settlement.settled:
            self.queue.remove(hole)
            log.info("trade hole of %s filled up to id %d (%s)", hole.symbol, hole.last_id, hole.cause)

    def _retry_or_declare(self, hole: Hole, stream: str, problem: str) -> None:
        hole.attempts += 1
        if hole.attempts >= self._config.backfill_max_attempts:
            line, reason = self._records.give_up(hole, stream, problem)
            self._count_declared(hole, hole.first_id, hole.last_id, reason)
            self._intake.emit(line)
            self.queue.remove(hole)
            return
        delay = backoff_delay(hole.attempts - 1, 1.0, self._config.backfill_retry_max_s, self._rng)
        hole.not_before = time.monotonic() + delay
        log.warning(
            "trade backfill of %s from id %d failed: %s (retry in %.1f s)", hole.symbol, hole.first_id, problem, delay
        )

    def _count_declared(self, hole: Hole, first_id: int, last_id: int, reason: str) -> None:
        self._intake.metrics.backfill_declared.inc(last_id - first_id + 1)
        log.warning("trade ids %d..%d of %s cannot be backfilled: %s", first_id, last_id, hole.symbol, reason)

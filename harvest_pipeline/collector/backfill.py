"""Live trade backfill: every aggTrade hole the collector knows of is filled from REST, off the readers' path.

Holes come from the id trackers (a jump, a reconnect, a stalled stream, the ids missed while the collector was down)
and from lost records (the writer's loss report carries the trade ids of the aggTrade lines it could not write).
One task works through them oldest first, one ``/fapi/v1/aggTrades`` page at a time, within a share of the
request-weight budget it shares with the depth snapshots. Every request leaves a ``backfill`` record (request time,
``fromId``, HTTP status, weight, what it stored) and each trade of the hole one ``rest_trade`` record pointing at it.
What the exchange cannot give is declared in a ``backfill`` record with ``outcome: declared`` and the reason: ids an
answer skipped (never issued, or past its history), or a hole still failing after ``backfill_max_attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

import aiohttp
import orjson

from harvest_pipeline.backfill.holes import (
    AGG_TRADES_PAGE,
    AGG_TRADES_WEIGHT,
    Hole,
    HoleQueue,
    not_served_reason,
    read_page,
)
from harvest_pipeline.backfill.rest import PageAnswer, fetch_page
from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.intake import Intake
from harvest_pipeline.collector.rest_budget import DEFAULT_RETRY_AFTER_S, WeightBudget
from harvest_pipeline.collector.shard import backoff_delay
from harvest_pipeline.segments import Line, encode_bad_frame, encode_control, encode_rest_trade

log = logging.getLogger(__name__)

OUTCOME_FETCHED = "fetched"
OUTCOME_DECLARED = "declared"


class TradeBackfiller:
    """Fills aggTrade holes from REST, one page at a time, never blocking a reader."""

    def __init__(self, config: CollectorConfig, intake: Intake, conn_id: str, rng: random.Random, budget: WeightBudget):
        self._config = config
        self._intake = intake
        self.conn_id = conn_id
        self._rng = rng
        self._budget = budget
        self._cap = max(AGG_TRADES_WEIGHT, int(config.rest_weight_per_minute * config.backfill_weight_share))
        self.queue = HoleQueue(config.backfill_max_holes)
        self._wake = asyncio.Event()
        self._seq = 0
        self._streams = {
            entry.symbol: entry.name for entry in intake.entries.values() if entry.name.endswith("@aggTrade")
        }

    def request(self, symbol: str, first_id: int, last_id: int, cause: str) -> None:
        """Queue ids ``first_id..last_id`` of ``symbol`` for filling (on the asyncio thread)."""
        if symbol not in self._streams or last_id < first_id:
            return
        self.queue.add(Hole(symbol, first_id, last_id, cause))
        self._intake.metrics.backfill_holes_pending.set(len(self.queue))
        self._wake.set()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

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
                wait = self._budget.wait_s(AGG_TRADES_WEIGHT, now, self._cap)
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                self._budget.spend(AGG_TRADES_WEIGHT, time.monotonic())
                answer = await fetch_page(
                    session, self._config.rest_base, hole.symbol, hole.first_id, self._intake.clock
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
        if answer.status in (418, 429):
            pause = answer.retry_after_s if answer.retry_after_s is not None else DEFAULT_RETRY_AFTER_S
            self._budget.pause(pause, time.monotonic())
            metrics.backfill_requests.labels(f"http_{answer.status}").inc()
            self._emit_request(hole, answer, stream, stored=0)
            log.warning("trade backfill rejected with HTTP %d; REST paused %.1f s", answer.status, pause)
            return
        if answer.trades is None:
            metrics.backfill_requests.labels("error").inc()
            request_seq = self._emit_request(hole, answer, stream, stored=0)
            if answer.status == 200:  # keep the unreadable answer as evidence
                reason = f"aggTrades answer: {answer.problem}"
                self._intake.emit(
                    encode_bad_frame(answer.received_ns, self.conn_id, request_seq, stream, answer.body, reason)
                )
            self._retry_or_declare(hole, stream, answer.problem or "no answer")
            return
        outcome = read_page(hole, [trade_id for trade_id, _ in answer.trades])
        metrics.backfill_requests.labels("ok").inc()
        request_seq = self._emit_request(hole, answer, stream, stored=len(outcome.in_hole))
        lines = [
            encode_rest_trade(
                answer.received_ns, self.conn_id, self._next_seq(), stream, hole.symbol, request_seq, trade
            )
            for trade in (orjson.dumps(answer.trades[index][1]) for index in outcome.in_hole)
        ]
        self._intake.emit_many(lines)
        metrics.backfill_trades.inc(len(lines))
        for first_id, last_id in outcome.not_served:
            self._declare(hole, stream, first_id, last_id, not_served_reason(first_id, last_id))
        if outcome.next_first_id is None:
            self.queue.remove(hole)
            log.info("trade hole of %s filled up to id %d (%s)", hole.symbol, hole.last_id, hole.cause)
        elif not answer.trades:
            self._retry_or_declare(hole, stream, "the exchange answered no trade from this id")
        else:
            hole.first_id, hole.attempts = outcome.next_first_id, 0

    def _retry_or_declare(self, hole: Hole, stream: str, problem: str) -> None:
        hole.attempts += 1
        if hole.attempts >= self._config.backfill_max_attempts:
            reason = f"REST backfill gave up after {hole.attempts} attempts: {problem}"
            self._declare(hole, stream, hole.first_id, hole.last_id, reason)
            self.queue.remove(hole)
            return
        delay = backoff_delay(hole.attempts - 1, 1.0, self._config.backfill_retry_max_s, self._rng)
        hole.not_before = time.monotonic() + delay
        log.warning(
            "trade backfill of %s from id %d failed: %s (retry in %.1f s)", hole.symbol, hole.first_id, problem, delay
        )

    def _emit_request(self, hole: Hole, answer: PageAnswer, stream: str, stored: int) -> int:
        """The ``backfill`` record of one request; returns its sequence number (the ``r`` of its trades)."""
        seq = self._next_seq()
        ids = [trade_id for trade_id, _ in answer.trades or []]
        self._intake.emit(
            encode_control(
                answer.received_ns,
                self.conn_id,
                seq,
                "backfill",
                stream,
                symbol=hole.symbol,
                outcome=OUTCOME_FETCHED,
                from_id=hole.first_id,
                to_id=hole.last_id,
                count=stored,
                cause=hole.cause,
                requested_ns=answer.requested_ns,
                limit=AGG_TRADES_PAGE,
                status=answer.status,
                weight=AGG_TRADES_WEIGHT,
                answered=len(ids),
                answered_first_id=min(ids, default=None),
                answered_last_id=max(ids, default=None),
                problem=answer.problem,
            )
        )
        return seq

    def _declare(self, hole: Hole, stream: str, first_id: int, last_id: int, reason: str) -> None:
        self._intake.metrics.backfill_declared.inc(last_id - first_id + 1)
        log.warning("trade ids %d..%d of %s cannot be backfilled: %s", first_id, last_id, hole.symbol, reason)
        line: Line = encode_control(
            self._intake.clock(),
            self.conn_id,
            self._next_seq(),
            "backfill",
            stream,
            symbol=hole.symbol,
            outcome=OUTCOME_DECLARED,
            from_id=first_id,
            to_id=last_id,
            count=last_id - first_id + 1,
            cause=hole.cause,
            reason=reason,
        )
        self._intake.emit(line)

"""Healing the aggTrade holes of past days from REST (``harvest backfill``, the ``trade_backfill`` asset).

For each UTC day the completeness certificate of the visible Parquet lists the holes of the aggTrade ids. Those still
open (``unexplained``, or ``declared`` by anything but an earlier REST backfill: a gap, a write loss, the collector
being down) are filled from ``GET /fapi/v1/aggTrades`` exactly as the collector's live backfill fills its holes
(``settle``): oldest first, one page at a time, within a request-weight budget that also believes the server's
``X-MBX-USED-WEIGHT-1M``, pausing for ``Retry-After`` on 429/418, retrying failures with backoff and declaring what
still fails after ``RetryPolicy.attempts``. One page may settle several small holes.

Everything a run writes (a ``backfill`` record per request, the ``rest_trade`` records, the declarations) streams into
one segment of collector ``backfill`` (``segment``), sealed like a collector's: the compaction sensor finds it. Page
by page, so memory stays one page deep whatever the day holds.

Declarations carry a time inside their hole's day (``DayHole.stamp_ns``): events are filed by record time, and a day's
certificate reads only its own and its neighbours' events, so a hole declared weeks later must still be filed there.
Once the segment is compacted, a second run finds nothing left to fill; run before that, it fetches the same ids again
and compaction keeps each id once (the websocket row first).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import pyarrow as pa

from harvest_pipeline.backfill.holes import AGG_TRADES_WEIGHT, Hole
from harvest_pipeline.backfill.rest import fetch_page
from harvest_pipeline.backfill.segment import HealSegment, exclusive_healing
from harvest_pipeline.backfill.settle import BACKFILL_DECLARATIONS, BackfillRecords, Settlement
from harvest_pipeline.collector.rest_budget import WeightBudget
from harvest_pipeline.collector.shard import backoff_delay
from harvest_pipeline.completeness import build_certificate
from harvest_pipeline.completeness.trades import AGG_TRADE_SEQUENCE
from harvest_pipeline.markets import USDM, Market
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.store.migration import move_legacy_layout
from harvest_pipeline.symbols import validate_symbol

log = logging.getLogger(__name__)

DEFAULT_WEIGHT_PER_MINUTE = 600
"""A quarter of Binance's 2,400 per IP and minute: with a running collector's own 1,200 it leaves headroom. The
server's ``X-MBX-USED-WEIGHT-1M`` (every client of the IP) holds a run back further when others spend more."""
REST_TIMEOUT_S = 10.0
MS_PER_DAY = 86_400_000


@dataclass(frozen=True)
class RetryPolicy:
    """How a hole whose requests fail (no answer, an HTTP error, an unreadable or empty answer) is retried."""

    attempts: int = 5
    """Failed requests in a row after which what is left of the hole is declared."""
    initial_s: float = 1.0
    max_s: float = 30.0


@dataclass
class DayHole(Hole):
    """A hole of one day's certificate."""

    stamp_ns: int = 0
    """The time its declarations carry: inside its day, so that day's certificate reads them (events are filed by
    record time; the wall-clock time of the declaration is the request's, in the ``backfill`` record before it)."""


@dataclass(frozen=True)
class DeclaredIds:
    """Ids of one day the exchange cannot give, and why."""

    day: dt.date
    first_id: int
    last_id: int
    reason: str

    @property
    def ids(self) -> int:
        """How many ids the range holds."""
        return self.last_id - self.first_id + 1


@dataclass(frozen=True)
class HealProgress:
    """Where a run stands, for a progress bar: the day being healed, and totals so far."""

    symbol: str
    day: dt.date
    day_number: int
    """1-based position of ``day`` in the run."""
    days: int
    holes_done: int
    holes: int
    """Holes of ``day`` to fill, and how many are settled."""
    ids_done: int
    ids: int
    """Ids in those holes, and how many are stored or declared."""
    requests: int
    weight_used: int
    trades_stored: int
    ids_declared: int
    waiting_s: float
    """Seconds still to wait before the next request (request weight, ``Retry-After`` or a retry backoff); 0 when
    not waiting."""

    @property
    def day_fraction(self) -> float:
        """How much of the day's hole ids is settled, 0..1 (1 for a day without holes)."""
        return self.ids_done / self.ids if self.ids else 1.0


@dataclass
class HealReport:
    """What a run did."""

    symbol: str
    days: list[dt.date] = field(default_factory=list)
    holes_considered: int = 0
    holes_unlisted: int = 0
    """Open holes the certificates counted but did not list (more than ``MAX_LISTED_HOLES`` a day): a run after
    this one's segment is compacted heals them."""
    requests: int = 0
    weight_used: int = 0
    trades_stored: int = 0
    declared: list[DeclaredIds] = field(default_factory=list)
    ids_declared: int = 0
    """Ids in ``declared``."""
    segment: str | None = None
    """The sealed segment holding the run's records; None when there was nothing to fill."""


def heal_days(
    paths: DataPaths,
    symbol: str,
    first_day: dt.date,
    last_day: dt.date,
    rest_base: str,
    weight_per_minute: int = DEFAULT_WEIGHT_PER_MINUTE,
    progress: Callable[[HealProgress], None] | None = None,
    retry_declared: bool = False,
    *,
    retry: RetryPolicy = RetryPolicy(),
    clock: Callable[[], int] = time.time_ns,
    market: Market = USDM,
) -> HealReport:
    """Fill the open aggTrade holes of ``symbol`` on the UTC days ``first_day..last_day`` from REST into one new
    sealed segment (see the module docstring). ``retry_declared`` also retries holes an earlier backfill declared.
    One run at a time per data root and market: a second one waits for the first. ``market``: whose Parquet root the
    holes are read from and whose REST path fills them. Raises ``ValueError`` on bad arguments."""
    validate_symbol(symbol)
    if last_day < first_day:
        raise ValueError(f"the last day {last_day} is before the first day {first_day}")
    if weight_per_minute < AGG_TRADES_WEIGHT:
        raise ValueError(
            f"weight_per_minute must be at least {AGG_TRADES_WEIGHT} (one request), not {weight_per_minute}"
        )
    days = [first_day + dt.timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    report = HealReport(symbol)
    move_legacy_layout(paths.parquet)
    with exclusive_healing(paths, market):
        output = HealSegment(paths, clock, market)
        budget = WeightBudget(weight_per_minute)
        healer = _Healer(symbol, rest_base, budget, output, report, retry, progress, clock, market)
        try:
            asyncio.run(healer.heal(paths, days, retry_declared))
        except BaseException:
            try:  # keep what was fetched: it is as good as a finished run's
                report.segment = output.seal()
            except OSError as exc:
                log.error("cannot seal the backfill segment (the next run will): %s", exc)
            raise
        report.segment = output.seal()
    return report


def open_holes(certificate: pa.Table, symbol: str, day: dt.date, retry_declared: bool) -> tuple[list[DayHole], int]:
    """The aggTrade holes of a day's certificate still to fill (by first id), and how many open holes it counted
    without listing them."""
    rows = [row for row in certificate.to_pylist() if row["sequence"] == AGG_TRADE_SEQUENCE]
    if not rows:
        return [], 0
    [row] = rows
    start_ms = (day - dt.date(1970, 1, 1)).days * MS_PER_DAY
    holes = []
    for listed in row["holes"]:
        reason = listed["reason"] or ""
        if listed["cause"] == "healed" or (
            listed["cause"] == "declared" and reason.startswith(BACKFILL_DECLARATIONS) and not retry_declared
        ):
            continue
        event_ms = listed["before_time_ms"] or listed["after_time_ms"] or start_ms
        cause = f"certificate of {day}: {listed['cause']}" + (f" ({reason})" if reason else "")
        stamp_ms = min(max(event_ms, start_ms), start_ms + MS_PER_DAY - 1)
        holes.append(DayHole(symbol, listed["first_id"], listed["last_id"], cause[:500], stamp_ns=stamp_ms * 10**6))
    listed_open = sum(1 for hole in row["holes"] if hole["cause"] != "healed")
    unlisted = row["declared_holes"] + row["unexplained_holes"] - listed_open
    return sorted(holes, key=lambda hole: hole.first_id), unlisted


class _Healer:
    """One run: the budget, the records and the running totals; heals one day at a time."""

    def __init__(
        self,
        symbol: str,
        rest_base: str,
        budget: WeightBudget,
        output: HealSegment,
        report: HealReport,
        retry: RetryPolicy,
        progress: Callable[[HealProgress], None] | None,
        clock: Callable[[], int],
        market: Market,
    ):
        self.symbol, self.rest_base, self.budget = symbol, rest_base, budget
        self.market = market
        self.stream = f"{symbol.lower()}@aggTrade"
        self.output, self.report, self.retry, self.progress, self.clock = output, report, retry, progress, clock
        self.records = BackfillRecords(output.conn_id, clock)
        self.rng = random.Random()
        self.day, self.day_number, self.days = dt.date.min, 0, 0
        self.holes_done = self.holes = self.ids_done = self.ids = 0

    async def heal(self, paths: DataPaths, days: list[dt.date], retry_declared: bool) -> None:
        """Heal ``days`` in order."""
        self.days = len(days)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REST_TIMEOUT_S)) as session:
            for self.day_number, self.day in enumerate(days, start=1):
                parquet_root = self.market.parquet_root(paths.parquet)
                certificate = await asyncio.to_thread(build_certificate, parquet_root, self.day, self.symbol)
                holes, unlisted = open_holes(certificate, self.symbol, self.day, retry_declared)
                self.report.days.append(self.day)
                self.report.holes_considered += len(holes)
                self.report.holes_unlisted += unlisted
                if unlisted:
                    log.warning("%s %s: %d more open holes than the certificate lists", self.symbol, self.day, unlisted)
                self.holes, self.holes_done = len(holes), 0
                self.ids, self.ids_done = sum(hole.ids for hole in holes), 0
                self._notify(0.0)
                declared_before = self.report.ids_declared
                await self._heal_day(session, deque(holes))
                if holes:
                    log.info(
                        "%s %s: %d holes of %d ids settled, %d ids declared unfillable",
                        self.symbol,
                        self.day,
                        self.holes,
                        self.ids,
                        self.report.ids_declared - declared_before,
                    )

    async def _heal_day(self, session: aiohttp.ClientSession, pending: deque[DayHole]) -> None:
        while pending:
            hole = pending[0]
            await self._wait_for_weight()
            self.budget.spend(AGG_TRADES_WEIGHT, time.monotonic())
            path = self.market.rest_path("aggTrades")
            answer = await fetch_page(session, self.rest_base, self.symbol, hole.first_id, self.clock, path)
            self.report.requests += 1
            self.report.weight_used += AGG_TRADES_WEIGHT
            if answer.used_weight is not None:
                self.budget.server_reports(answer.used_weight, time.monotonic())
            settlement = self.records.settle(pending, answer, self.stream, hole.stamp_ns)
            self.output.append(settlement.lines)
            self._account(settlement)
            for _ in settlement.settled:  # a prefix of the pending holes
                pending.popleft()
                self.holes_done += 1
            if settlement.pause_s is not None:
                self.budget.pause(settlement.pause_s, time.monotonic())
                log.warning("aggTrades rejected with HTTP %s; REST paused %.1f s", answer.status, settlement.pause_s)
            elif settlement.retry is not None:
                await self._retry_or_declare(pending, settlement.retry)
            self._notify(0.0)

    def _account(self, settlement: Settlement) -> None:
        self.report.trades_stored += settlement.stored
        self.ids_done += settlement.stored
        for first_id, last_id, reason in settlement.declared:
            self._declared(first_id, last_id, reason)

    def _declared(self, first_id: int, last_id: int, reason: str) -> None:
        declared = DeclaredIds(self.day, first_id, last_id, reason)
        self.report.declared.append(declared)
        self.report.ids_declared += declared.ids
        self.ids_done += declared.ids
        log.debug("trade ids %d..%d of %s cannot be backfilled: %s", first_id, last_id, self.symbol, reason)

    async def _retry_or_declare(self, pending: deque[DayHole], problem: str) -> None:
        hole = pending[0]
        hole.attempts += 1
        if hole.attempts >= self.retry.attempts:
            line, reason = self.records.give_up(hole, self.stream, problem, hole.stamp_ns)
            self.output.append([line])
            self._declared(hole.first_id, hole.last_id, reason)
            pending.popleft()
            self.holes_done += 1
            return
        delay = backoff_delay(hole.attempts - 1, self.retry.initial_s, self.retry.max_s, self.rng)
        log.warning(
            "aggTrades of %s from id %d failed: %s (retry in %.1f s)", self.symbol, hole.first_id, problem, delay
        )
        await self._sleep(delay)

    async def _wait_for_weight(self) -> None:
        while (wait := self.budget.wait_s(AGG_TRADES_WEIGHT, time.monotonic())) > 0:
            self._notify(wait)
            await asyncio.sleep(min(wait, 1.0))

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._notify(left)
            await asyncio.sleep(min(left, 1.0))

    def _notify(self, waiting_s: float) -> None:
        if self.progress is None:
            return
        self.progress(
            HealProgress(
                symbol=self.symbol,
                day=self.day,
                day_number=self.day_number,
                days=self.days,
                holes_done=self.holes_done,
                holes=self.holes,
                ids_done=min(self.ids_done, self.ids),
                ids=self.ids,
                requests=self.report.requests,
                weight_used=self.report.weight_used,
                trades_stored=self.report.trades_stored,
                ids_declared=self.report.ids_declared,
                waiting_s=waiting_s,
            )
        )

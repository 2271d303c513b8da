"""Open interest: every symbol's REST ``openInterest`` on a fixed schedule, each answer stored verbatim.

Binance streams no open interest, so it is polled, on the futures markets (``/fapi/v1/openInterest``,
``/dapi/v1/openInterest``); spot has none, and its collector runs no poller (``Market.has_open_interest``). One task
asks for one symbol at a time, round robin, one turn every ``open_interest_interval_s / len(symbols)`` seconds: the
symbols are spread over the interval, never fetched together, and at most one request is ever in flight. Each poll costs
weight 1 from the request-weight budget shared with the depth snapshots and the trade backfill, and the polls never
spend more than ``open_interest_weight_share`` of it: when the symbols need more, the turns are spaced further apart
(logged when the recorded symbols change). A symbol that starts being recorded is polled from the next round on; one
that stops is not polled again.

An answer is stored as an ``open_interest`` record, its body verbatim (a body that cannot be embedded becomes a
``bad_frame``, reason ``open interest: <why>``). A failed poll (no answer, a timeout, an HTTP error) stores nothing:
it is a missed sample, not lost data. It is counted (``harvest_open_interest_polls_total{symbol,outcome}``), shown
in /healthz, and the symbol is asked again at its next turn. HTTP 429/418 pause every REST caller for
``Retry-After``; a turn that comes while the budget allows no request is skipped (outcome ``skipped``), and a late
turn is never made up for: turns always stay at least one spacing apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import aiohttp

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.intake import Intake
from harvest_pipeline.collector.rest_budget import (
    DEFAULT_RETRY_AFTER_S,
    WEIGHT_WINDOW_S,
    RestAnswer,
    WeightBudget,
    budgeted_get,
)
from harvest_pipeline.segments.records import KIND_OPEN_INTEREST, encode_open_interest

log = logging.getLogger(__name__)

OPEN_INTEREST_ENDPOINT = "openInterest"
OPEN_INTEREST_WEIGHT = 1


@dataclass
class SymbolPolls:
    """How the polls of one symbol went (for /healthz)."""

    stored: int = 0
    failed: int = 0
    failures_in_a_row: int = 0
    last_stored_ns: int | None = None
    last_outcome: str | None = None
    last_error: str | None = None

    def report(self, now_ns: int) -> dict[str, object]:
        """This symbol's entry in /healthz."""
        age = None if self.last_stored_ns is None else round((now_ns - self.last_stored_ns) / 1e9, 3)
        return {
            "stored": self.stored,
            "failed": self.failed,
            "failures_in_a_row": self.failures_in_a_row,
            "last_outcome": self.last_outcome,
            "last_stored_age_s": age,
            "last_error": self.last_error,
        }


def poll_spacing_s(config: CollectorConfig, symbols: int | None = None) -> float:
    """Seconds between two polls: the interval spread over the symbols (default: the explicit ones), stretched to
    stay within the weight share."""
    count = max(1, len(config.symbol_selection.explicit) if symbols is None else symbols)
    cap = max(OPEN_INTEREST_WEIGHT, int(config.rest_weight_per_minute * config.open_interest_weight_share))
    return max(config.open_interest_interval_s / count, WEIGHT_WINDOW_S * OPEN_INTEREST_WEIGHT / cap)


class OpenInterestPoller:
    """Polls every symbol's open interest in turn, forever (cancelled at shutdown)."""

    def __init__(self, config: CollectorConfig, intake: Intake, conn_id: str, budget: WeightBudget):
        self._config = config
        self._intake = intake
        self.conn_id = conn_id
        self._budget = budget
        self._url = config.rest_url(OPEN_INTEREST_ENDPOINT)
        self._seq = 0
        self.polls: dict[str, SymbolPolls] = {}
        self.spacing_s = poll_spacing_s(config, 0)
        self._changed = asyncio.Event()

    def add_symbols(self, symbols: list[str]) -> None:
        """Poll symbols that started being recorded, from the next round on."""
        for symbol in symbols:
            self.polls.setdefault(symbol, SymbolPolls())
        self._symbols_changed()

    def remove_symbols(self, symbols: list[str]) -> None:
        """Stop polling symbols no longer recorded (their figures leave /healthz and the metrics)."""
        for symbol in symbols:
            if self.polls.pop(symbol, None) is not None:
                with contextlib.suppress(KeyError):
                    self._intake.metrics.open_interest_last_ok.remove(symbol)
        self._symbols_changed()

    def _symbols_changed(self) -> None:
        self.spacing_s = poll_spacing_s(self._config, len(self.polls))
        self._changed.set()

    @property
    def interval_s(self) -> float:
        """How often each symbol is polled: ``open_interest_interval_s``, unless the weight share stretched it."""
        return self.spacing_s * max(1, len(self.polls))

    def health(self) -> dict[str, object]:
        """The open-interest part of /healthz."""
        now = self._intake.clock()
        return {
            "interval_s": round(self.interval_s, 3),
            "symbols": {symbol: polls.report(now) for symbol, polls in self.polls.items()},
        }

    async def run(self) -> None:
        """Poll until cancelled; each round polls the symbols recorded when it starts."""
        timeout = aiohttp.ClientTimeout(total=self._config.rest_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            turn_at = time.monotonic()
            while True:
                if self._changed.is_set():
                    self._changed.clear()
                    self._warn_if_stretched()
                if not self.polls:
                    await self._changed.wait()
                    turn_at = time.monotonic()
                    continue
                for symbol in list(self.polls):
                    await asyncio.sleep(max(0.0, turn_at - time.monotonic()))
                    if symbol in self.polls:
                        await self._take_turn(session, symbol)
                        turn_at = max(turn_at + self.spacing_s, time.monotonic())

    def _warn_if_stretched(self) -> None:
        if self.interval_s > self._config.open_interest_interval_s * 1.001:
            log.warning(
                "open interest of %d symbols every %g s would exceed %g %% of the request weight; polling every "
                "%g s instead",
                len(self.polls),
                self._config.open_interest_interval_s,
                self._config.open_interest_weight_share * 100,
                self.interval_s,
            )

    async def _take_turn(self, session: aiohttp.ClientSession, symbol: str) -> None:
        """Poll ``symbol`` now if the budget allows a request, else count the turn as skipped."""
        wait = self._budget.wait_s(OPEN_INTEREST_WEIGHT, time.monotonic())
        if wait > 0:
            self._failed(symbol, "skipped", f"no request weight left (REST paused or budget spent for {wait:.1f} s)")
            return
        answer = await budgeted_get(session, self._url, {"symbol": symbol}, self._budget, OPEN_INTEREST_WEIGHT)
        if answer.status == 200:
            self._store(symbol, answer.body)
        elif answer.status is None:
            self._failed(symbol, "error", answer.error or "no answer")
        else:
            self._rejected(symbol, answer)

    def _store(self, symbol: str, body: bytes) -> None:
        self._seq += 1
        line = encode_open_interest(self._intake.clock(), self.conn_id, self._seq, symbol, body)
        self._intake.emit(line)
        if line.kind != KIND_OPEN_INTEREST:
            self._failed(symbol, "bad_body", f"answer stored as bad_frame: {body[:200]!r}")
            return
        polls = self.polls.get(symbol)
        if polls is None:  # removed from the recorded symbols while the request was out
            return
        polls.stored += 1
        polls.failures_in_a_row = 0
        polls.last_stored_ns = line.recv_ns
        polls.last_outcome = "ok"
        self._intake.metrics.open_interest_polls.labels(symbol, "ok").inc()
        self._intake.metrics.open_interest_last_ok.labels(symbol).set(line.recv_ns / 1e9)

    def _rejected(self, symbol: str, answer: RestAnswer) -> None:
        status = answer.status
        if status in (418, 429):
            pause = answer.retry_after_s if answer.retry_after_s is not None else DEFAULT_RETRY_AFTER_S
            self._budget.pause(pause, time.monotonic())
            log.warning("open interest of %s rejected with HTTP %d; REST paused %.1f s", symbol, status, pause)
        self._failed(symbol, f"http_{status}", f"HTTP {status}: {answer.body[:200]!r}")

    def _failed(self, symbol: str, outcome: str, error: str) -> None:
        """A missed sample: counted, shown in /healthz, logged when a symbol starts failing or fails for long."""
        polls = self.polls.get(symbol)
        if polls is None:
            return
        polls.failed += 1
        polls.failures_in_a_row += 1
        polls.last_outcome = outcome
        polls.last_error = error
        self._intake.metrics.open_interest_polls.labels(symbol, outcome).inc()
        if polls.failures_in_a_row in (1, 10) or polls.failures_in_a_row % 100 == 0:
            log.warning(
                "open interest of %s not polled (%s, %d in a row): %s; next try in %.1f s",
                symbol,
                outcome,
                polls.failures_in_a_row,
                error,
                self.interval_s,
            )

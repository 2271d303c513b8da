"""What one ``/fapi/v1/aggTrades`` answer does to the holes it was asked for, written as segment records.

Shared by the collector's live backfill (``collector.backfill``) and the healing of past days (``days``), so both leave
the same provenance: one ``backfill`` record per request (``outcome: fetched``: request time, ``fromId``, HTTP status,
weight, what it stored), one ``rest_trade`` record per trade of a hole pointing at it (``r``), and a ``backfill``
record with ``outcome: declared`` and the reason for ids the exchange cannot give. Pure: the caller sends the
requests, writes the lines and decides when to retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import takewhile

import orjson

from harvest_pipeline.backfill.holes import (
    AGG_TRADES_PAGE,
    AGG_TRADES_WEIGHT,
    NOT_SERVED,
    Hole,
    not_served_reason,
    read_page,
)
from harvest_pipeline.backfill.rest import PageAnswer
from harvest_pipeline.collector.rest_budget import DEFAULT_RETRY_AFTER_S
from harvest_pipeline.segments import Line, encode_bad_frame, encode_control, encode_rest_trade

OUTCOME_FETCHED = "fetched"
OUTCOME_DECLARED = "declared"
NO_TRADE_PROBLEM = "the exchange answered no trade from this id"
GAVE_UP = "REST backfill gave up"
BACKFILL_DECLARATIONS = (GAVE_UP, NOT_SERVED)
"""How the reasons of this module's declarations start: a hole declared with one of them was already tried by REST."""


def gave_up_reason(attempts: int, problem: str) -> str:
    """The declared reason for a hole whose requests kept failing."""
    return f"{GAVE_UP} after {attempts} attempts: {problem}"


@dataclass(frozen=True)
class Settlement:
    """The records one answer produced and what it means for the holes asked for."""

    lines: list[Line]
    """To write, in order: the request's ``backfill`` record, evidence of an unreadable answer, trades, declarations."""
    label: str
    """``ok``, ``error`` (no readable answer) or ``http_<status>`` (429/418: REST must pause)."""
    stored: int
    """``rest_trade`` records among ``lines``."""
    declared: list[tuple[int, int, str]]
    """Id ranges (inclusive) declared, each with its reason."""
    pause_s: float | None
    """How long every REST caller must pause (a 429/418 and its ``Retry-After``), else None."""
    settled: list[Hole]
    """The holes the answer settled entirely (filled and/or declared): a prefix of the holes asked for."""
    retry: str | None
    """Why the first hole must be tried again (no readable answer, or no trade from its first id), else None."""


class BackfillRecords:
    """The records of one REST backfill client: its connection id, its sequence numbers, how each answer reads."""

    def __init__(self, conn_id: str, clock: Callable[[], int]):
        self.conn_id = conn_id
        self.clock = clock
        self._seq = 0

    def next_seq(self) -> int:
        """The next sequence number of this client's records."""
        self._seq += 1
        return self._seq

    def settle(
        self, holes: Iterable[Hole], answer: PageAnswer, stream: str, declared_ns: int | None = None
    ) -> Settlement:
        """Read ``answer`` (asked for ``fromId`` = the first hole's ``first_id``) against ``holes`` of one symbol,
        sorted and disjoint: every hole that starts at or below the largest id answered is judged, so one page can
        settle several small holes. A hole the page ends inside moves on (``first_id``, attempts reset).
        ``declared_ns`` stamps the declarations (default: now)."""
        ordered = iter(holes)
        first = next(ordered)
        if answer.status in (418, 429):
            pause = answer.retry_after_s if answer.retry_after_s is not None else DEFAULT_RETRY_AFTER_S
            line, _ = self._request([first], answer, stream, stored=0)
            return Settlement([line], f"http_{answer.status}", 0, [], pause, [], None)
        if answer.trades is None:
            line, request_seq = self._request([first], answer, stream, stored=0)
            lines = [line]
            if answer.status == 200:  # keep the unreadable answer as evidence
                reason = f"aggTrades answer: {answer.problem}"
                lines.append(
                    encode_bad_frame(answer.received_ns, self.conn_id, request_seq, stream, answer.body, reason)
                )
            return Settlement(lines, "error", 0, [], None, [], answer.problem or "no answer")
        ids = [trade_id for trade_id, _ in answer.trades]
        reached = max(ids, default=first.first_id)
        judged = [(first, read_page(first, ids))]
        judged += [(hole, read_page(hole, ids)) for hole in takewhile(lambda h: h.first_id <= reached, ordered)]
        stored = sum(len(outcome.in_hole) for _, outcome in judged)
        request, request_seq = self._request([hole for hole, _ in judged], answer, stream, stored)
        lines, declared, settled = [request], [], []
        stamp = self.clock() if declared_ns is None else declared_ns
        for hole, outcome in judged:
            lines += [
                encode_rest_trade(
                    answer.received_ns, self.conn_id, self.next_seq(), stream, hole.symbol, request_seq, trade
                )
                for trade in (orjson.dumps(answer.trades[index][1]) for index in outcome.in_hole)
            ]
            for first_id, last_id in outcome.not_served:
                reason = not_served_reason(first_id, last_id)
                lines.append(self.declaration(hole, stream, first_id, last_id, reason, stamp))
                declared.append((first_id, last_id, reason))
            if outcome.next_first_id is None:
                settled.append(hole)
            elif answer.trades:
                hole.first_id, hole.attempts = outcome.next_first_id, 0
        retry = NO_TRADE_PROBLEM if not answer.trades and not settled else None
        return Settlement(lines, "ok", stored, declared, None, settled, retry)

    def give_up(self, hole: Hole, stream: str, problem: str, declared_ns: int | None = None) -> tuple[Line, str]:
        """The declaration of what is left of a hole whose requests kept failing, and its reason."""
        reason = gave_up_reason(hole.attempts, problem)
        stamp = self.clock() if declared_ns is None else declared_ns
        return self.declaration(hole, stream, hole.first_id, hole.last_id, reason, stamp), reason

    def declaration(self, hole: Hole, stream: str, first_id: int, last_id: int, reason: str, recv_ns: int) -> Line:
        """A ``backfill`` record declaring ids ``first_id..last_id`` of ``hole`` unfillable, with the reason."""
        return encode_control(
            recv_ns,
            self.conn_id,
            self.next_seq(),
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

    def _request(self, holes: list[Hole], answer: PageAnswer, stream: str, stored: int) -> tuple[Line, int]:
        """The ``backfill`` record of one request for ``holes`` and its sequence number (the ``r`` of its trades)."""
        seq = self.next_seq()
        ids = [trade_id for trade_id, _ in answer.trades or []]
        causes = list(dict.fromkeys(hole.cause for hole in holes))
        cause = causes[0] if len(causes) == 1 else "; ".join(causes)[:500]
        line = encode_control(
            answer.received_ns,
            self.conn_id,
            seq,
            "backfill",
            stream,
            symbol=holes[0].symbol,
            outcome=OUTCOME_FETCHED,
            from_id=holes[0].first_id,
            to_id=holes[-1].last_id,
            count=stored,
            cause=cause,
            requested_ns=answer.requested_ns,
            limit=AGG_TRADES_PAGE,
            status=answer.status,
            weight=AGG_TRADES_WEIGHT,
            answered=len(ids),
            answered_first_id=min(ids, default=None),
            answered_last_id=max(ids, default=None),
            problem=answer.problem,
        )
        return line, seq

"""What the simulator sent: per connection and stream, frame counts, injected bad and repeated frames, first/last ids;
REST requests, their weight per clock minute and the rows answered per endpoint and symbol; per symbol, the aggregate
trade ids issued, skipped and forgotten, the liquidations run and reported, and when it was listed and delisted.

Counts are taken when a frame is handed to the socket, so a client that stayed connected received exactly
``frames + malformed + repeated`` frames per stream. Control replies are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StreamTally:
    """Frames of one stream sent on one connection."""

    frames: int = 0
    malformed: int = 0
    repeated: int = 0
    first_id: int | None = None
    last_id: int | None = None
    bytes: int = 0

    def count_frame(self, frame_id: int, size: int) -> None:
        """A well-formed data frame with exchange id ``frame_id`` (``a`` or ``u``) was sent."""
        self.frames += 1
        self.bytes += size
        if self.first_id is None:
            self.first_id = frame_id
        self.last_id = frame_id

    def to_json(self) -> dict[str, Any]:
        """The accounting JSON of this tally."""
        return {
            "frames": self.frames,
            "malformed": self.malformed,
            "repeated": self.repeated,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "bytes": self.bytes,
        }


@dataclass
class ConnectionRecord:
    """One websocket connection, open or closed."""

    connection_id: str
    route: str | None
    """``public`` or ``market`` on a routed market (USDⓈ-M), None on an unrouted one."""
    path: str
    opened_ms: int
    closed_ms: int | None = None
    close_reason: str | None = None
    streams: dict[str, StreamTally] = field(default_factory=dict)

    def tally(self, stream: str) -> StreamTally:
        """The tally of ``stream`` on this connection, created on first use."""
        tally = self.streams.get(stream)
        if tally is None:
            tally = self.streams[stream] = StreamTally()
        return tally

    def to_json(self) -> dict[str, Any]:
        """The accounting JSON of this connection."""
        return {
            "route": self.route,
            "path": self.path,
            "opened_ms": self.opened_ms,
            "closed_ms": self.closed_ms,
            "close_reason": self.close_reason,
            "streams": {stream: tally.to_json() for stream, tally in self.streams.items()},
        }


MINUTES_KEPT = 60
"""Clock minutes of REST weight kept in ``weight_by_minute`` (the maximum covers the whole run)."""


@dataclass
class RestTally:
    """REST requests answered, weight charged (in total and per clock minute), requests rejected by HTTP status and
    per endpoint and symbol the rows of successful answers."""

    requests: int = 0
    connections: int = 0
    """HTTP connections that carried REST requests (keep-alive: a client reuses one for many requests)."""
    weight_used: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: {"429": 0})
    weight_by_minute: dict[int, int] = field(default_factory=dict)
    """Weight charged per clock minute (minutes since the epoch), the last ``MINUTES_KEPT`` minutes."""
    max_weight_per_minute: int = 0
    answered: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per endpoint (the path after the market's prefix, ``/fapi/v1/`` on USDⓈ-M) and symbol, the HTTP 200 answers
    that carried a row of that symbol (a list answer counts for every symbol in it; ``""`` for answers about no
    symbol)."""

    def count_answer(self, endpoint: str, symbols: list[str]) -> None:
        """An HTTP 200 answer of ``endpoint`` carried rows of ``symbols``."""
        counts = self.answered.setdefault(endpoint, {})
        for symbol in symbols:
            counts[symbol] = counts.get(symbol, 0) + 1

    def count_connection(self) -> None:
        """One more HTTP connection carried REST requests."""
        self.connections += 1

    def charge(self, weight: int, minute: int) -> None:
        """``weight`` was charged in clock minute ``minute`` (minutes since the epoch)."""
        self.weight_used += weight
        if minute not in self.weight_by_minute:
            for old in [old for old in self.weight_by_minute if old <= minute - MINUTES_KEPT]:
                del self.weight_by_minute[old]
        used = self.weight_by_minute[minute] = self.weight_by_minute.get(minute, 0) + weight
        self.max_weight_per_minute = max(self.max_weight_per_minute, used)

    def to_json(self) -> dict[str, Any]:
        """The accounting JSON of REST traffic; minutes are keyed by their start in epoch seconds."""
        return {
            "requests": self.requests,
            "connections": self.connections,
            "weight_used": self.weight_used,
            "rejected": dict(self.rejected),
            "max_weight_per_minute": self.max_weight_per_minute,
            "weight_by_minute": {str(minute * 60): weight for minute, weight in self.weight_by_minute.items()},
            "answered": {endpoint: dict(counts) for endpoint, counts in self.answered.items()},
        }


@dataclass
class TradeIdTally:
    """The aggregate trade ids the market model issued for one symbol, and the ranges it skipped (never issued).

    Bounded: two ids and a count, plus one range per ``skip_agg_ids`` fault (adjacent skips merge into one).
    """

    first_id: int | None = None
    last_id: int | None = None
    issued: int = 0
    skipped: list[list[int]] = field(default_factory=list)

    def count_issued(self, first_id: int, last_id: int, count: int) -> None:
        """``count`` ids from ``first_id`` to ``last_id`` were issued (ids only grow)."""
        if self.first_id is None:
            self.first_id = first_id
        self.last_id = last_id
        self.issued += count

    def count_skipped(self, first_id: int, count: int) -> None:
        """The ``count`` ids from ``first_id`` on will never be issued."""
        if count <= 0:
            return
        last_id = first_id + count - 1
        if self.skipped and self.skipped[-1][1] == first_id - 1:
            self.skipped[-1][1] = last_id
        else:
            self.skipped.append([first_id, last_id])

    def to_json(self, forgotten_below: int | None) -> dict[str, Any]:
        """The accounting JSON of one symbol's trades; ``forgotten_below`` is the smallest id REST may still serve
        (None while REST has forgotten nothing)."""
        return {
            "first_id": self.first_id,
            "last_id": self.last_id,
            "issued": self.issued,
            "skipped": [list(span) for span in self.skipped],
            "forgotten_below": forgotten_below,
        }


def stream_totals(connections: list[ConnectionRecord]) -> dict[str, dict[str, Any]]:
    """Per stream over all connections: summed counts, smallest first id and largest last id."""
    totals: dict[str, dict[str, Any]] = {}
    for record in connections:
        for stream, tally in record.streams.items():
            total = totals.setdefault(
                stream, {"frames": 0, "malformed": 0, "repeated": 0, "first_id": None, "last_id": None}
            )
            total["frames"] += tally.frames
            total["malformed"] += tally.malformed
            total["repeated"] += tally.repeated
            if tally.first_id is not None:
                first, last = total["first_id"], total["last_id"]
                total["first_id"] = tally.first_id if first is None else min(first, tally.first_id)
                total["last_id"] = tally.last_id if last is None else max(last, tally.last_id)
    return totals


def accounting_json(
    connections: list[ConnectionRecord],
    rest: RestTally,
    trades: dict[str, dict[str, Any]],
    liquidations: dict[str, dict[str, int]],
    listings: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """The full accounting document (``GET /admin/accounting`` and the ``--accounting-file``); ``trades`` maps each
    symbol to its ``TradeIdTally`` JSON, ``liquidations`` to its liquidation counts, ``listings`` to its status
    changes."""
    return {
        "connections": {record.connection_id: record.to_json() for record in connections},
        "streams": stream_totals(connections),
        "rest": rest.to_json(),
        "trades": trades,
        "liquidations": liquidations,
        "listings": listings,
    }

"""Fault injection: validating fault requests and holding the faults that are currently armed.

A fault request is the JSON object ``POST /admin/fault`` takes: ``{"fault": NAME, ...params}``. ``parse_fault`` checks
it (unknown names or bad params raise ``FaultError`` with a message for the HTTP 400). ``FaultState`` remembers the
faults that act over time or over the next frames; the server asks it, per frame or per request, what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

MALFORMED = "malformed"
TRUNCATED = "truncated"

_NUMBER = (int, float)
FAULT_PARAMS: dict[str, dict[str, tuple[type, ...]]] = {
    "drop_all": {},
    "drop_connection": {"connection": (str,)},
    "stall_connection": {"connection": (str,), "seconds": _NUMBER},
    "stall_stream": {"stream": (str,), "seconds": _NUMBER},
    MALFORMED: {"stream": (str,), "count": (int,)},
    TRUNCATED: {"stream": (str,), "count": (int,)},
    "skip_agg_ids": {"symbol": (str,), "count": (int,)},
    "break_pu": {"symbol": (str,)},
    "repeat": {"stream": (str,), "count": (int,)},
    "burst": {"seconds": _NUMBER, "multiplier": _NUMBER},
    "lifetime": {"seconds": _NUMBER},
    "rest_status": {"status": (int,), "count": (int,), "retry_after": _NUMBER},
    "clear": {},
}
"""Every fault name with its required parameters and their JSON types."""
_OPTIONAL = {("rest_status", "retry_after"), ("rest_status", "count")}
_REST_STATUSES = {418, 429, 500, 502, 503, 504}


class FaultError(ValueError):
    """A fault request that names an unknown fault or has bad parameters."""


def parse_fault(request: Any) -> dict[str, Any]:
    """Validate a fault request; returns it with symbols upper-cased and optional params filled in."""
    if not isinstance(request, dict) or not isinstance(request.get("fault"), str):
        raise FaultError('a fault request is a JSON object like {"fault": "drop_all"}')
    name = request["fault"]
    if name not in FAULT_PARAMS:
        raise FaultError(f"unknown fault {name!r}; known faults: {', '.join(FAULT_PARAMS)}")
    params = FAULT_PARAMS[name]
    unknown = set(request) - set(params) - {"fault"}
    if unknown:
        raise FaultError(f"fault {name!r} takes {sorted(params) or 'no parameters'}, not {sorted(unknown)}")
    fault: dict[str, Any] = {"fault": name, **({"count": 1, "retry_after": 0} if name == "rest_status" else {})}
    for key, types in params.items():
        if key not in request:
            if (name, key) in _OPTIONAL:
                continue
            raise FaultError(f"fault {name!r} needs parameter {key!r}")
        if isinstance(request[key], bool) or not isinstance(request[key], types):
            expected = " or ".join(t.__name__ for t in types)
            raise FaultError(f"fault {name!r}: {key!r} must be {expected}, got {request[key]!r}")
        value: Any = request[key]
        if key in ("seconds", "count", "multiplier", "retry_after") and value < 0:
            raise FaultError(f"fault {name!r}: {key!r} must be >= 0, got {value!r}")
        fault[key] = value.upper() if key == "symbol" else value
    if name == "rest_status" and fault["status"] not in _REST_STATUSES:
        raise FaultError(f"fault 'rest_status': status must be one of {sorted(_REST_STATUSES)}")
    return fault


@dataclass
class FaultState:
    """Faults armed right now. Times are ``loop.time()`` seconds."""

    stalled_streams: dict[str, float] = field(default_factory=dict)
    stalled_connections: dict[str, float] = field(default_factory=dict)
    bad_frames: dict[str, list[str]] = field(default_factory=dict)
    """Per stream, the bad frames still to inject (one before each of the next data frames)."""
    repeats: dict[str, int] = field(default_factory=dict)
    broken_pu: set[str] = field(default_factory=set)
    burst_until: float = 0.0
    burst_multiplier: float = 1.0
    rest_status: int = 0
    rest_count: int = 0
    rest_retry_after: float = 0.0

    def clear(self) -> None:
        """Disarm every fault."""
        fresh = FaultState()
        for spec in fields(self):
            setattr(self, spec.name, getattr(fresh, spec.name))

    def arm(self, fault: dict[str, Any], now: float) -> None:
        """Arm a parsed fault that acts over time or over the next frames/requests."""
        name = fault["fault"]
        if name == "stall_stream":
            self.stalled_streams[fault["stream"]] = now + fault["seconds"]
        elif name == "stall_connection":
            self.stalled_connections[fault["connection"]] = now + fault["seconds"]
        elif name in (MALFORMED, TRUNCATED):
            self.bad_frames.setdefault(fault["stream"], []).extend([name] * fault["count"])
        elif name == "repeat":
            self.repeats[fault["stream"]] = self.repeats.get(fault["stream"], 0) + fault["count"]
        elif name == "break_pu":
            self.broken_pu.add(fault["symbol"])
        elif name == "burst":
            self.burst_until, self.burst_multiplier = now + fault["seconds"], float(fault["multiplier"])
        elif name == "rest_status":
            self.rest_status, self.rest_count = fault["status"], fault["count"]
            self.rest_retry_after = float(fault["retry_after"])

    def has_stream_faults(self) -> bool:
        """Whether any per-stream or per-connection fault is armed (the fast path skips all checks otherwise)."""
        return bool(self.stalled_streams or self.stalled_connections or self.bad_frames or self.repeats)

    def stream_stalled(self, stream: str, now: float) -> bool:
        """Whether data on ``stream`` is held back right now."""
        return _still_active(self.stalled_streams, stream, now)

    def connection_stalled(self, connection_id: str, now: float) -> bool:
        """Whether data to ``connection_id`` is held back right now (its pings go on)."""
        return _still_active(self.stalled_connections, connection_id, now)

    def take_frame_faults(self, stream: str) -> tuple[str | None, bool]:
        """For the next frame of ``stream``: the bad frame to inject before it (or None) and whether to repeat it."""
        bad = None
        pending = self.bad_frames.get(stream)
        if pending:
            bad = pending.pop()
            if not pending:
                del self.bad_frames[stream]
        repeat = False
        left = self.repeats.get(stream, 0)
        if left:
            repeat = True
            if left == 1:
                del self.repeats[stream]
            else:
                self.repeats[stream] = left - 1
        return bad, repeat

    def take_break_pu(self, symbol: str) -> bool:
        """Whether the next depth diff of ``symbol`` must be lost (so the following one's ``pu`` breaks the chain)."""
        if symbol in self.broken_pu:
            self.broken_pu.discard(symbol)
            return True
        return False

    def rate_multiplier(self, now: float) -> float:
        """The burst multiplier in force (1.0 outside a burst)."""
        return self.burst_multiplier if now < self.burst_until else 1.0

    def take_rest_status(self) -> tuple[int, float] | None:
        """``(status, retry_after)`` when the next REST request must fail, else None."""
        if self.rest_count <= 0:
            return None
        self.rest_count -= 1
        return self.rest_status, self.rest_retry_after


def _still_active(deadlines: dict[str, float], key: str, now: float) -> bool:
    """Whether ``key``'s deadline lies ahead; an expired deadline is forgotten."""
    until = deadlines.get(key)
    if until is None:
        return False
    if now < until:
        return True
    del deadlines[key]
    return False

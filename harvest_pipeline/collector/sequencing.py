"""Cheap byte-level extraction of what the hot path must know, and gap detection on exchange sequence ids.

Nothing here parses JSON: the stream name and the handful of ids are located with ``bytes.find`` in the raw frame.
A frame whose ids cannot be found is simply not sequenced (compaction decides whether it is valid).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_INT = re.compile(rb"-?\d+")
_STREAM_KEY = b'"stream":"'
_COMBINED_PREFIX = b'{"stream":"'


def extract_stream(raw: bytes) -> bytes | None:
    """The ``stream`` value of a combined-stream frame, or None (control replies, garbage)."""
    if raw.startswith(_COMBINED_PREFIX):
        start = len(_COMBINED_PREFIX)
    else:
        at = raw.find(_STREAM_KEY)
        if at < 0:
            return None
        start = at + len(_STREAM_KEY)
    end = raw.find(b'"', start)
    return raw[start:end] if end > start else None


def extract_int(raw: bytes, key: bytes) -> int | None:
    """The integer value of ``key`` (given with its quotes and colon, e.g. ``b'"pu":'``), or None."""
    at = raw.find(key)
    if at < 0:
        return None
    start = at + len(key)
    end = raw.find(b",", start)
    try:
        return int(raw[start:end])
    except ValueError:
        match = _INT.match(raw, start)
        return int(match.group()) if match else None


@dataclass(frozen=True)
class Gap:
    """A break in an exchange id sequence."""

    stream: str
    reason: str
    expected: int
    got: int
    missing: int | None


class AggTradeSequence:
    """Tracks ``a`` (aggregate trade id) of one aggTrade stream across all connections; ``a`` rises by exactly 1.

    Ids at or below the highest seen are duplicates (e.g. from an overlapping rotation) and are not gaps.
    """

    needs_snapshot = False

    def __init__(self, stream: str):
        self.stream = stream
        self.last_id: int | None = None

    def observe(self, raw: bytes) -> Gap | None:
        """Account for one frame; returns the gap it reveals, if any."""
        agg_id = extract_int(raw, b'"a":')
        if agg_id is None:
            return None
        last = self.last_id
        if last is None or agg_id > last:
            self.last_id = agg_id
        if last is None or agg_id <= last + 1:
            return None
        return Gap(self.stream, "aggTrade id jump", last + 1, agg_id, agg_id - last - 1)


class DepthSequence:
    """Follows the ``pu`` → ``u`` chain of one diff-depth stream across all connections.

    ``needs_snapshot`` is set when the stream first produces data and after every break: the caller then fetches a
    REST snapshot of that symbol only. Frames with ``u`` at or below the highest seen are overlap duplicates.
    """

    def __init__(self, stream: str):
        self.stream = stream
        self.last_u: int | None = None
        self.needs_snapshot = False

    def observe(self, raw: bytes) -> Gap | None:
        """Account for one frame; returns the gap it reveals, if any."""
        final_id = extract_int(raw, b'"u":')
        prev_final = extract_int(raw, b'"pu":')
        if final_id is None or prev_final is None:
            return None
        last = self.last_u
        if last is None:
            self.last_u = final_id
            self.needs_snapshot = True
            return None
        if final_id <= last:
            return None
        self.last_u = final_id
        if prev_final == last:
            return None
        self.needs_snapshot = True
        first_id = extract_int(raw, b'"U":')
        return Gap(
            self.stream, "depth pu chain break", last, prev_final, None if first_id is None else first_id - last - 1
        )


def sequence_for(stream: str) -> AggTradeSequence | DepthSequence | None:
    """The tracker a stream needs: aggTrade ids, diff-depth chains; None for everything else (bookTicker, ...)."""
    kind = stream.partition("@")[2]
    if kind == "aggTrade":
        return AggTradeSequence(stream)
    if kind.startswith("depth") and not kind[5:6].isdigit():
        return DepthSequence(stream)
    return None

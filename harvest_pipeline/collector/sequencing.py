"""Cheap byte-level extraction of what the hot path must know, and gap detection on exchange sequence ids.

Nothing here parses JSON: the stream name and the handful of ids are located with ``bytes.find`` in the raw frame.
A frame whose ids cannot be found is simply not sequenced (compaction decides whether it is valid).

Trackers judge every id before they believe it, because one absurd id must not blind gap detection for the rest of
the process. An id is implausible when it lies outside ``0..MAX_ID`` (or is not an integer at all), is more than
``MAX_ID_JUMP`` ahead of the last accepted id or more than ``MAX_ID_LAG`` behind it. ``observe`` then returns the
reason as a string and the tracker does not move: the caller stores the frame as a ``bad_frame`` with that reason.
Should the exchange really re-base its ids, two consecutive implausible frames that agree with each other (``a``
rising by 1; the depth chain continued) are believed: the tracker moves to the new base and reports an id rebase as a
``Gap``. The same rule heals the tracker after it believed a corrupt id that was ahead but within
``MAX_ID_JUMP``: the real ids, more than ``MAX_ID_LAG`` behind it, re-base it after two frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harvest_pipeline.markets import DepthChain

MAX_ID = 2**63 - 1
"""Exchange ids are int64 (Parquet's ``int64`` columns downstream); anything outside ``0..MAX_ID`` is not an id."""
MAX_ID_JUMP = 2**40
"""The largest step ahead of the last accepted id that is believed (about 1.1e12). Binance's busiest streams advance
far slower: BTCUSDT's aggTrade id reached ~6e9 in six years, and its diff-depth ``u`` grows by ~1e4 per second, so
2^40 covers years of downtime between a ``resume_after`` and the next frame, while a corrupt id (10^18, 2^63-1,
a digit run) is far outside it."""
MAX_ID_LAG = 2**24
"""The farthest behind the last accepted id that a frame is still a duplicate (about 1.7e7): an overlapping or
lagging connection repeats seconds, at most minutes, of ids (aggTrade ~1e3 per second in a burst, depth ``u``
~1e4). Anything farther behind is implausible."""
NOT_AN_INTEGER = -(2**70)
"""What ``extract_int`` returns for a key whose value is not an integer of at most 20 digits. No parsed value can
equal it (20 digits stay below 2^67), and it lies outside ``0..MAX_ID``, so trackers reject it with their range
check and need no extra test on the hot path."""

_MAX_ID_DIGITS = 20
"""2^64 - 1 has 20 digits; a longer digit run is never converted (``int`` refuses over 4300 digits anyway)."""
_INT_VALUE = re.compile(rb"[ \t\r\n]*(-?[0-9]{1,20})(?![0-9.eE])")
_VALUE_TOKEN = re.compile(rb"[ \t\r\n]*([^,}\]]*)")
_INTEGER_TEXT = re.compile(r"-?[0-9]+")
_REASON_VALUE_CHARS = 40
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
    """The integer value of ``key`` (given with its quotes and colon, e.g. ``b'"pu":'``): None when the key is
    absent, ``NOT_AN_INTEGER`` when its value is not an integer of at most 20 digits. Never raises; the work is
    a ``bytes.find`` and at most 20 digits converted, whatever the frame holds."""
    at = raw.find(key)
    if at < 0:
        return None
    start = at + len(key)
    end = raw.find(b",", start)
    if start < end <= start + _MAX_ID_DIGITS:
        try:
            return int(raw[start:end])
        except ValueError:
            pass
    match = _INT_VALUE.match(raw, start)
    return int(match.group(1)) if match else NOT_AN_INTEGER


def value_text(raw: bytes, key: bytes) -> str:
    """The raw value of ``key`` for a message: at most 40 characters, with its full length when longer."""
    at = raw.find(key)
    if at < 0:
        return "(absent)"
    match = _VALUE_TOKEN.match(raw, at + len(key))
    token = match.group(1) if match else b""
    text = token[:_REASON_VALUE_CHARS].decode("utf-8", "replace")
    return f"{text}... ({len(token)} chars)" if len(token) > _REASON_VALUE_CHARS else text


def out_of_range_reason(name: str, raw: bytes, key: bytes) -> str:
    """Why the id ``key`` of ``raw`` (called ``name`` in the message, e.g. ``aggTrade id a``) is not believed."""
    text = value_text(raw, key)
    if _INTEGER_TEXT.fullmatch(text.partition("...")[0]):
        return f"{name}={text} outside 0..2^63-1"
    return f"{name}={text} is not an integer"


def jump_reason(name: str, value: int, last: int, what: str) -> str:
    """Why an in-range id that moves too far from the last accepted one is not believed."""
    if value > last:
        return f"{name}={value} is more than 2^40 ahead of the last accepted {what} {last}"
    return f"{name}={value} is more than 2^24 behind the last accepted {what} {last}"


@dataclass(frozen=True)
class Gap:
    """A break in an exchange id sequence (for an id rebase ``missing`` is None: the counts do not compare)."""

    stream: str
    reason: str
    expected: int
    got: int
    missing: int | None


class _IdTracker:
    """What both trackers keep besides their last id: a rebase candidate and a pending ``resume_after`` reason."""

    def __init__(self, stream: str):
        self.stream = stream
        self._candidate: tuple[int, int] | None = None
        """(last accepted id, implausible id) of the previous frame, when it was implausible: a rebase candidate."""
        self._resume: tuple[int, str] | None = None
        """(id resumed after, reason for the gap the next frame reveals) from ``resume_after``."""

    def _resume_at(self, last: int, reason: str) -> None:
        self._candidate = None
        self._resume = (last, reason)

    def _gap_reason(self, last: int, default: str) -> str:
        """``default``, or the ``resume_after`` reason while the id resumed after is still the last accepted one."""
        resume = self._resume
        return resume[1] if resume is not None and resume[0] == last else default


_DUPLICATE, _FORWARD, _IMPLAUSIBLE = "duplicate", "forward", "implausible"


def _move(value: int, last: int) -> str:
    """How an id within ``0..MAX_ID`` relates to the last accepted one."""
    if value <= last:
        return _DUPLICATE if last - value <= MAX_ID_LAG else _IMPLAUSIBLE
    return _FORWARD if value - last <= MAX_ID_JUMP else _IMPLAUSIBLE


class AggTradeSequence(_IdTracker):
    """Tracks ``a`` (aggregate trade id) of one aggTrade stream across all connections; ``a`` rises by exactly 1.

    Ids at or below the highest seen (within ``MAX_ID_LAG``) are duplicates, e.g. from an overlapping rotation,
    and are not gaps. ``observe`` returns None, a ``Gap``, or the reason (str) the frame's id is implausible.
    """

    needs_snapshot = False

    def __init__(self, stream: str):
        super().__init__(stream)
        self.last_id: int | None = None

    def resume_after(self, last_id: int, reason: str) -> None:
        """Continue as if ``last_id`` had just been seen (the previous run's last id): the first gap this reveals,
        the ids missed while the collector was down, is reported with ``reason``."""
        self.last_id = last_id
        self._resume_at(last_id, reason)

    def observe(self, raw: bytes) -> Gap | str | None:
        """Account for one frame; returns the gap it reveals, the reason its id is implausible, or None."""
        agg_id = extract_int(raw, b'"a":')
        if agg_id is None:
            return None
        last = self.last_id
        if last is not None and agg_id == last + 1 and agg_id <= MAX_ID:
            self.last_id = agg_id
            return None
        return self._judge(raw, agg_id, last)

    def _judge(self, raw: bytes, agg_id: int, last: int | None) -> Gap | str | None:
        candidate, self._candidate = self._candidate, None
        if not 0 <= agg_id <= MAX_ID:
            return out_of_range_reason("aggTrade id a", raw, b'"a":')
        if last is None:
            self.last_id = agg_id
            return None
        move = _move(agg_id, last)
        if move is _DUPLICATE:
            return None
        if move is _FORWARD:
            gap = Gap(self.stream, self._gap_reason(last, "aggTrade id jump"), last + 1, agg_id, agg_id - last - 1)
        elif candidate == (last, agg_id - 1):
            self._resume = None
            gap = Gap(self.stream, "aggTrade id rebase", last + 1, agg_id, None)
        else:
            self._candidate = (last, agg_id)
            return jump_reason("aggTrade id a", agg_id, last, "id")
        self.last_id = agg_id
        return gap


class DepthSequence(_IdTracker):
    """Follows the ``pu`` → ``u`` chain of one diff-depth stream across all connections (USDⓈ-M, COIN-M): a diff
    continues the chain when its ``pu`` is the previous diff's ``u``.

    ``needs_snapshot`` is set when the stream first produces data, after ``resume_after`` and after every break or
    rebase: the caller then fetches a REST snapshot of that symbol only. Frames with ``u`` at or below the highest
    seen (within ``MAX_ID_LAG``) are overlap duplicates. ``observe`` returns None, a ``Gap``, or the reason (str)
    the frame's ids are implausible.
    """

    CHAIN_NAME = "pu"
    """The id that links a diff to the one before it."""
    CHAIN_KEY = b'"pu":'
    BREAK = "pu chain break"
    """Why a snapshot is asked for after a break (the gap's reason is ``depth <BREAK>``)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.last_u: int | None = None
        self.needs_snapshot = False

    def resume_after(self, last_u: int, reason: str) -> None:
        """Continue as if a diff ending at ``last_u`` had just been seen (the previous run's last): the first break
        this reveals is reported with ``reason``, and, as at start, the next diff asks for a snapshot (this process
        has not stored one yet)."""
        self.last_u = last_u
        self.needs_snapshot = True
        self._resume_at(last_u, reason)

    def observe(self, raw: bytes) -> Gap | str | None:
        """Account for one frame; returns the gap it reveals, the reason its ids are implausible, or None."""
        final_id = extract_int(raw, b'"u":')
        prev_final = extract_int(raw, b'"pu":')
        if final_id is None or prev_final is None:
            return None
        last = self.last_u
        if prev_final == last and 0 < final_id - last <= MAX_ID_JUMP and final_id <= MAX_ID:
            self.last_u = final_id
            return None
        return self._judge(raw, final_id, prev_final, last)

    @staticmethod
    def _predecessor(chain_id: int) -> int:
        """The ``u`` of the diff before, named by the chain id (``pu`` names it as it is)."""
        return chain_id

    def _judge(self, raw: bytes, final_id: int, chain_id: int, last: int | None) -> Gap | str | None:
        candidate, self._candidate = self._candidate, None
        if not 0 <= final_id <= MAX_ID:
            return out_of_range_reason("depth id u", raw, b'"u":')
        if not 0 <= chain_id <= MAX_ID:
            return out_of_range_reason(f"depth id {self.CHAIN_NAME}", raw, self.CHAIN_KEY)
        prev_final = self._predecessor(chain_id)
        if last is None:
            self.last_u = final_id
            self.needs_snapshot = True
            return None
        move = _move(final_id, last)
        if move is _DUPLICATE:
            return None
        if move is _FORWARD:
            reason = self._gap_reason(last, f"depth {self.BREAK}")
            gap = Gap(self.stream, reason, last, prev_final, self._missing(raw, last))
        elif candidate == (last, prev_final):
            self._resume = None
            gap = Gap(self.stream, "depth id rebase", last, prev_final, None)
        else:
            self._candidate = (last, final_id)
            return jump_reason("depth id u", final_id, last, "u")
        self.last_u = final_id
        self.needs_snapshot = True
        return gap

    @staticmethod
    def _missing(raw: bytes, last: int) -> int | None:
        first_id = extract_int(raw, b'"U":')
        return first_id - last - 1 if first_id is not None and 0 <= first_id <= MAX_ID else None


class FirstIdDepthSequence(DepthSequence):
    """Follows the chain of one spot diff-depth stream, whose diffs carry no ``pu``: a diff continues the chain when
    its first update id ``U`` is the previous diff's ``u`` + 1, i.e. ``U - 1`` plays the part of ``pu`` (in the gap
    records too: ``got`` is ``U - 1``). Everything else is ``DepthSequence``'s."""

    CHAIN_NAME = "U"
    CHAIN_KEY = b'"U":'
    BREAK = "U chain break"

    def observe(self, raw: bytes) -> Gap | str | None:
        """Account for one frame; returns the gap it reveals, the reason its ids are implausible, or None."""
        final_id = extract_int(raw, b'"u":')
        first_id = extract_int(raw, b'"U":')
        if final_id is None or first_id is None:
            return None
        last = self.last_u
        if last is not None and first_id == last + 1 and 0 < final_id - last <= MAX_ID_JUMP and final_id <= MAX_ID:
            self.last_u = final_id
            return None
        return self._judge(raw, final_id, first_id, last)

    @staticmethod
    def _predecessor(chain_id: int) -> int:
        return chain_id - 1


def sequence_for(stream: str, depth_chain: DepthChain = "pu") -> AggTradeSequence | DepthSequence | None:
    """The tracker a stream needs: aggTrade ids, diff-depth chains (linked as the market's ``depth_chain`` says);
    None for everything else (bookTicker, ...)."""
    kind = stream.partition("@")[2]
    if kind == "aggTrade":
        return AggTradeSequence(stream)
    if kind.startswith("depth") and not kind[5:6].isdigit():
        return FirstIdDepthSequence(stream) if depth_chain == "first_id" else DepthSequence(stream)
    return None

"""Record encoding (the collector's hot path: byte formatting only) and decoding (compaction, tests, replay)."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

KIND_FRAME = "frame"
KIND_BAD_FRAME = "bad_frame"
KIND_SNAPSHOT = "snapshot"
KIND_OPEN_INTEREST = "open_interest"
KIND_REST_TRADE = "rest_trade"
KIND_BACKFILL = "backfill"
CONTROL_KINDS = frozenset(
    {"connect", "disconnect", "subscribed", "watchdog", "gap", "write_loss", "recovered", KIND_BACKFILL}
)
RECORD_KINDS = (
    frozenset({KIND_FRAME, KIND_BAD_FRAME, KIND_SNAPSHOT, KIND_OPEN_INTEREST, KIND_REST_TRADE}) | CONTROL_KINDS
)

MAX_BAD_FRAME_BYTES = 64 * 1024
_SAFE_TOKEN = re.compile(rb"^[A-Za-z0-9@_.:\-]{1,200}$")
RECORD_PREFIX = re.compile(rb'^\{"t":(\d+),"c":"([^"]*)","n":(\d+),"k":"(\w+)"(?:,"s":"([^"]*)")?')


class Line(NamedTuple):
    """One encoded record ready to append, with what the segment statistics need to know about it."""

    data: bytes
    kind: str
    stream: str | None
    recv_ns: int


def unembeddable_reason(raw: bytes) -> str | None:
    """Why ``raw`` cannot be embedded verbatim in a JSONL line, or None when it can.

    This is a shape check, not a parse: a frame that passes may still be invalid JSON, and compaction quarantines
    such a line with its number and reason. What it guarantees is that the line stays one line of valid UTF-8.
    """
    if not raw:
        return "empty frame"
    if b"\n" in raw or b"\r" in raw:
        return "frame contains a line break"
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"invalid UTF-8 at byte {exc.start}"
    stripped = raw.strip()
    if not (stripped.startswith(b"{") and stripped.endswith(b"}")):
        return "frame is not a JSON object"
    return None


_new_line = tuple.__new__  # builds a Line without NamedTuple's Python-level __new__ (hot path)
_SAFE_STREAM_CACHE: dict[str, bytes] = {}
_SAFE_STREAM_CACHE_MAX = 10_000


def _safe_stream_bytes(stream: str) -> bytes | None:
    """``stream`` encoded, or None when it is not a safe token (memoised: the hot path sees few distinct names)."""
    cached = _SAFE_STREAM_CACHE.get(stream)
    if cached is not None:
        return cached
    encoded = stream.encode()
    if not _SAFE_TOKEN.match(encoded):
        return None
    if len(_SAFE_STREAM_CACHE) < _SAFE_STREAM_CACHE_MAX:
        _SAFE_STREAM_CACHE[stream] = encoded
    return encoded


def encode_frame(recv_ns: int, conn_id: str, seq: int, stream: str, raw: bytes) -> Line:
    """A ``frame`` record embedding ``raw`` byte for byte, or a ``bad_frame`` record when it cannot be embedded."""
    # Fast path for the common case (an ASCII object without line breaks); anything else gets the full check.
    if not (raw and raw[0] == 0x7B and raw[-1] == 0x7D and raw.isascii() and 0x0A not in raw and 0x0D not in raw):
        reason = unembeddable_reason(raw)
        if reason is not None:
            return encode_bad_frame(recv_ns, conn_id, seq, stream, raw, reason)
    stream_b = _SAFE_STREAM_CACHE.get(stream) or _safe_stream_bytes(stream)
    if stream_b is None:
        return encode_bad_frame(recv_ns, conn_id, seq, stream, raw, "unsafe stream name")
    data = b'{"t":%d,"c":"%b","n":%d,"k":"frame","s":"%b","f":%b}\n' % (
        recv_ns,
        conn_id.encode(),
        seq,
        stream_b,
        raw,
    )
    return _new_line(Line, (data, KIND_FRAME, stream, recv_ns))


def encode_bad_frame(
    recv_ns: int, conn_id: str, seq: int, stream: str, raw: bytes, reason: str, raw_len: int | None = None
) -> Line:
    """A ``bad_frame`` record: the first 64 KiB of the frame in base64, its full length (``raw_len`` when only the
    start of the frame was kept, else ``len(raw)``), and why it was set aside."""
    record = {
        "t": recv_ns,
        "c": conn_id,
        "n": seq,
        "k": KIND_BAD_FRAME,
        "s": stream,
        "reason": reason,
        "raw_len": len(raw) if raw_len is None else raw_len,
        "raw_b64": base64.b64encode(raw[:MAX_BAD_FRAME_BYTES]).decode("ascii"),
    }
    return Line(_dumps_line(record), KIND_BAD_FRAME, stream, recv_ns)


def encode_snapshot(recv_ns: int, conn_id: str, seq: int, symbol: str, body: bytes, **fields: Any) -> Line:
    """A ``snapshot`` record embedding a REST depth response body verbatim (or a bad_frame if it cannot be)."""
    stream = f"{symbol.lower()}@depthSnapshot"
    return _encode_rest_body(recv_ns, conn_id, seq, KIND_SNAPSHOT, stream, symbol, body, "depth snapshot", fields)


def encode_open_interest(recv_ns: int, conn_id: str, seq: int, symbol: str, body: bytes) -> Line:
    """An ``open_interest`` record embedding a REST ``/fapi/v1/openInterest`` answer verbatim, stream
    ``<symbol>@openInterest`` (or a bad_frame if it cannot be embedded)."""
    stream = f"{symbol.lower()}@openInterest"
    return _encode_rest_body(recv_ns, conn_id, seq, KIND_OPEN_INTEREST, stream, symbol, body, "open interest", {})


def _encode_rest_body(
    recv_ns: int,
    conn_id: str,
    seq: int,
    kind: str,
    stream: str,
    symbol: str,
    body: bytes,
    what: str,
    fields: dict[str, Any],
) -> Line:
    """A REST answer record ``{prefix,"s":stream,"symbol":symbol,<fields>,"f":<body>}``; a body that cannot be
    embedded becomes a ``bad_frame`` with reason ``"<what>: <why>"``."""
    reason = unembeddable_reason(body)
    if reason is not None:
        return encode_bad_frame(recv_ns, conn_id, seq, stream, body, f"{what}: {reason}")
    extra = orjson.dumps({"symbol": symbol, **fields})[1:-1]
    data = b'{"t":%d,"c":"%b","n":%d,"k":"%b","s":"%b",%b,"f":%b}\n' % (
        recv_ns,
        conn_id.encode(),
        seq,
        kind.encode(),
        stream.encode(),
        extra,
        body.strip(),
    )
    return Line(data, kind, stream, recv_ns)


def encode_rest_trade(
    recv_ns: int, conn_id: str, seq: int, stream: str, symbol: str, request: int, trade: bytes
) -> Line:
    """A ``rest_trade`` record: one trade object of a ``GET /fapi/v1/aggTrades`` answer, embedded as ``"f"``, with
    the symbol (REST trades carry none) and ``r``, the sequence number of the ``backfill`` record of its request."""
    data = b'{"t":%d,"c":"%b","n":%d,"k":"rest_trade","s":"%b","symbol":"%b","r":%d,"f":%b}\n' % (
        recv_ns,
        conn_id.encode(),
        seq,
        stream.encode(),
        symbol.encode(),
        request,
        trade,
    )
    return Line(data, KIND_REST_TRADE, stream, recv_ns)


def encode_control(recv_ns: int, conn_id: str, seq: int, kind: str, stream: str | None = None, **fields: Any) -> Line:
    """A control record (connect, disconnect, gap, ...) with free-form JSON fields after the common prefix."""
    if kind not in CONTROL_KINDS:
        raise ValueError(f"unknown control record kind {kind!r}; expected one of {sorted(CONTROL_KINDS)}")
    record: dict[str, Any] = {"t": recv_ns, "c": conn_id, "n": seq, "k": kind}
    if stream is not None:
        record["s"] = stream
    record.update(fields)
    return Line(_dumps_line(record), kind, stream, recv_ns)


def _dumps_line(record: dict[str, Any]) -> bytes:
    """``record`` as one JSON line; never raises on a value (the records describing trouble must get written).

    orjson refuses some values (integers beyond 64 bits, lone surrogates, unknown types): the standard library then
    writes them (unknown types as their ``repr``, surrogates replaced), and integers too long even for ``str``
    (over 4300 digits) become a short description. Cyclic structures still raise: that is a programming error.
    """
    try:
        return orjson.dumps(record) + b"\n"
    except TypeError:  # orjson.JSONEncodeError
        pass
    try:
        text = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=repr)
    except ValueError:  # an int too long for str(), or a cycle (which raises again below)
        text = json.dumps(_huge_ints_described(record), separators=(",", ":"), ensure_ascii=False, default=repr)
    return text.encode("utf-8", "replace") + b"\n"


def _huge_ints_described(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _huge_ints_described(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_huge_ints_described(item) for item in value]
    if isinstance(value, int) and value.bit_length() > 14_000:
        return f"<integer of {value.bit_length()} bits>"
    return value


class BadLine(NamedTuple):
    """A line that is not a valid record, with what could be recovered of its prefix."""

    line_no: int
    reason: str
    raw: bytes
    recv_ns: int | None
    conn_id: str | None
    stream: str | None


def parse_record(line: bytes) -> dict[str, Any]:
    """Decode one record line; raises ``ValueError`` with the reason when it is not a valid record."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError("record is not a JSON object")
    for key, kind in (("t", int), ("c", str), ("n", int), ("k", str)):
        if not isinstance(record.get(key), kind):
            raise ValueError(f"record field {key!r} missing or not {kind.__name__}")
    if record["k"] not in RECORD_KINDS:
        raise ValueError(f"unknown record kind {record['k']!r}")
    return record


def bad_line(line_no: int, line: bytes, reason: str) -> BadLine:
    """Describe an unparseable line, recovering receive time, connection and stream from its prefix if possible."""
    match = RECORD_PREFIX.match(line)
    if match is None:
        return BadLine(line_no, reason, line, None, None, None)
    stream = match.group(5).decode("utf-8", "replace") if match.group(5) is not None else None
    return BadLine(line_no, reason, line, int(match.group(1)), match.group(2).decode("utf-8", "replace"), stream)


def iter_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_no, line)`` for every line of a segment, 1-based, without the trailing newline."""
    with open(path, "rb") as handle:
        for line_no, line in enumerate(handle, start=1):
            yield line_no, line.rstrip(b"\n")


def iter_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
    """Yield ``(line_no, record)`` for every line; lines that do not decode come back as ``BadLine``."""
    for line_no, line in iter_lines(path):
        try:
            yield line_no, parse_record(line)
        except ValueError as exc:
            yield line_no, bad_line(line_no, line, str(exc))

"""The ``events`` kind and the quarantine: control records become events, set-aside lines become quarantine entries.

Every line that no data kind took ends here, so nothing read from a segment is ever silently dropped: a control
record is one ``events`` row; a malformed line, a collector ``bad_frame`` or a frame of an unsupported type is one
quarantine entry (segment, line number, reason, the line itself) plus one ``events`` row with event ``quarantine``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa

from harvest_pipeline import schema, segments
from harvest_pipeline.compaction import rules
from harvest_pipeline.symbols import SYMBOL_PATTERN

QUARANTINE_EVENT = "quarantine"
_EVENT_FIELDS = {
    "from_id": ("from_id", "expected"),
    "to_id": ("to_id", "got"),
    "from_time_ms": ("from_time_ms",),
    "to_time_ms": ("to_time_ms",),
    "count": ("count", "missing", "lines"),
}
"""events column -> control record keys that fill it, first present wins. The collector's ``gap`` records carry
``expected``/``got``/``missing``; its ``write_loss`` records carry ``lines`` and a receive-time range in ns."""
_EVENT_KEYS = (*dict.fromkeys(key for keys in _EVENT_FIELDS.values() for key in keys), "first_recv_ns", "last_recv_ns")
"""Control record keys that fill int64 columns (a value outside int64 sends the record to the quarantine)."""


@dataclass(frozen=True)
class QuarantineEntry:
    """One line set aside, with why."""

    line: int
    reason: str
    raw: str


@dataclass
class Ledger:
    """Control events and quarantined lines of one segment."""

    events: list[dict[str, Any]]
    quarantine: list[QuarantineEntry]

    @property
    def control_records(self) -> int:
        """Lines that were control records (each is one events row)."""
        return len(self.events) - len(self.quarantine)


def symbol_of(stream: str | None, declared: Any = None) -> str:
    """The symbol folder of an event: the record's ``symbol``, else the stream's prefix, else ``ALL``."""
    for candidate in (declared, stream.split("@", 1)[0].upper() if stream else None):
        if isinstance(candidate, str) and SYMBOL_PATTERN.match(candidate):
            return candidate
    return schema.ALL_SYMBOLS


def build_ledger(
    segment: str,
    fallback_recv_ns: int,
    leftover: list[tuple[int, str | None, str | None]],
    set_aside: list[tuple[int, str]],
    raw_of: Any,
) -> Ledger:
    """Turn leftover lines (``line, record_kind, event``) and lines set aside by a kind (``line, reason``) into events.

    ``raw_of(line)`` returns the line's text; ``fallback_recv_ns`` stands in for the receive time of a line too
    broken to carry a plausible one (the segment's open time). A record with an implausible prefix (``t``, ``n``)
    or an event column outside int64 is quarantined, never turned into a row (rules.py).
    """
    ledger = Ledger([], [])
    for line, record_kind, event in leftover:
        raw = raw_of(line)
        if raw is None:
            _quarantine(ledger, segment, fallback_recv_ns, line, b"", "line is not valid UTF-8")
            continue
        encoded = raw.encode()
        try:
            record = segments.parse_record(encoded)
        except ValueError as exc:
            _quarantine(ledger, segment, fallback_recv_ns, line, encoded, str(exc))
            continue
        problem = _record_problem(record)
        if problem is not None:
            _quarantine(ledger, segment, fallback_recv_ns, line, encoded, f"{record['k']} record: {problem}")
        elif record["k"] in segments.CONTROL_KINDS:
            ledger.events.append(_control_event(segment, line, raw, record))
        elif record["k"] == segments.KIND_BAD_FRAME:
            reason = f"collector bad_frame: {record.get('reason', 'no reason given')}"
            _quarantine(ledger, segment, fallback_recv_ns, line, encoded, reason)
        else:
            reason = f"{record_kind} record with unsupported event type {event!r}"
            _quarantine(ledger, segment, fallback_recv_ns, line, encoded, reason)
    for line, reason in set_aside:
        _quarantine(ledger, segment, fallback_recv_ns, line, raw_of(line).encode(), reason)
    ledger.quarantine.sort(key=lambda entry: entry.line)
    return ledger


def _record_problem(record: dict[str, Any]) -> str | None:
    """Why a decoded record cannot become a row (an implausible prefix or an event column outside int64), else None."""
    problems = [
        rules.int_problem("t", record["t"], min_value=rules.MIN_TIME_NS),
        rules.int_problem("n", record["n"]),
        *(rules.int64_problem(key, record.get(key)) for key in _EVENT_KEYS),
    ]
    found = [problem for problem in problems if problem is not None]
    return "; ".join(found) if found else None


def _control_event(segment: str, line: int, raw: str, record: dict[str, Any]) -> dict[str, Any]:
    stream = record.get("s") if isinstance(record.get("s"), str) else None
    reason = record.get("reason")
    row: dict[str, Any] = {
        "event_time_ms": record["t"] // 1_000_000,
        "event": record["k"],
        "stream": stream,
        "reason": reason if isinstance(reason, str) or reason is None else _json_text(reason),
        "detail": raw,
        "recv_time_ns": record["t"],
        "conn_id": record["c"],
        "segment": segment,
        "line": line,
        "symbol": symbol_of(stream, record.get("symbol")),
    }
    for column, keys in _EVENT_FIELDS.items():
        row[column] = next((record[key] for key in keys if _is_int(record.get(key))), None)
    for column, key in (("from_time_ms", "first_recv_ns"), ("to_time_ms", "last_recv_ns")):
        if row[column] is None and _is_int(record.get(key)):
            row[column] = record[key] // 1_000_000
    return row


def _json_text(value: Any) -> str:
    """``value`` as JSON text; integers beyond 64 bits (which orjson refuses) through the standard library."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, default=repr)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _quarantine(ledger: Ledger, segment: str, fallback_recv_ns: int, line: int, raw: bytes, reason: str) -> None:
    prefix = segments.bad_line(line, raw, reason)
    text = raw.decode("utf-8", "replace")
    ledger.quarantine.append(QuarantineEntry(line, reason, text))
    recv_ns = prefix.recv_ns
    if recv_ns is None or not rules.plausible_recv_ns(recv_ns):
        recv_ns = fallback_recv_ns
    ledger.events.append(
        {
            "event_time_ms": recv_ns // 1_000_000,
            "event": QUARANTINE_EVENT,
            "stream": prefix.stream,
            "reason": reason,
            "from_id": None,
            "to_id": None,
            "from_time_ms": None,
            "to_time_ms": None,
            "count": 1,
            "detail": orjson.dumps({"segment": segment, "line": line}).decode(),
            "recv_time_ns": recv_ns,
            "conn_id": prefix.conn_id or "",
            "segment": segment,
            "line": line,
            "symbol": symbol_of(prefix.stream),
        }
    )


def events_table(ledger: Ledger) -> pa.Table:
    """The events rows as Arrow (schema columns plus ``date`` and ``symbol``), sorted by date, symbol, time, line."""
    rows = sorted(
        ledger.events,
        key=lambda row: (_utc_date(row["event_time_ms"]), row["symbol"], row["event_time_ms"], row["line"]),
    )
    columns = {name: [row[name] for row in rows] for name in schema.EVENTS.names}
    table = pa.Table.from_pydict(columns, schema=schema.EVENTS)
    table = table.append_column("date", pa.array([_utc_date(row["event_time_ms"]) for row in rows], pa.string()))
    return table.append_column("symbol", pa.array([row["symbol"] for row in rows], pa.string()))


def quarantine_file_bytes(segment: str, entries: list[QuarantineEntry]) -> bytes:
    """The quarantine file of a segment: one JSON object per set-aside line (segment, line, reason, raw)."""
    return b"".join(
        orjson.dumps({"segment": segment, "line": e.line, "reason": e.reason, "raw": e.raw}) + b"\n" for e in entries
    )


def _utc_date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")

"""One websocket connection: connect, subscribe, read every frame into the intake, record how it ended.

The receive loop is the hot path: bytes in (no UTF-8 decode, no JSON parse), a wall-clock timestamp, a stream-name
lookup, an encode and a non-blocking queue offer. Reconnecting is the shard's job (``shard.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.intake import Intake
from harvest_pipeline.collector.sequencing import extract_stream
from harvest_pipeline.segments import encode_control, encode_frame

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from an HTTP ``Retry-After`` header (delta-seconds form), or None if absent or unreadable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class Connection:
    """A single connection to one routed endpoint carrying a fixed list of streams."""

    def __init__(self, conn_id: str, route: str, streams: list[str], intake: Intake, config: CollectorConfig):
        self.conn_id = conn_id
        self.route = route
        self.streams = streams
        self.url = f"{config.ws_base.rstrip('/')}/{route}/stream"
        self.first_data = asyncio.Event()
        self.retry_after_s: float | None = None
        self.connected_at: float | None = None
        self.ended_at: float | None = None
        self.created_at = time.monotonic()
        self.end_kind = "error"
        self._intake = intake
        self._config = config
        self._seq = 0
        self._frames = 0
        self._ws: websockets.ClientConnection | None = None
        self._close_reason: str | None = None

    @property
    def connected_for_s(self) -> float:
        """How long the connection was (or has been) open; 0 if it never opened."""
        if self.connected_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.connected_at

    def next_seq(self) -> int:
        """The next per-connection sequence number."""
        self._seq += 1
        return self._seq

    def _control(self, kind: str, stream: str | None = None, **fields: object) -> None:
        self._intake.emit(encode_control(self._intake.clock(), self.conn_id, self.next_seq(), kind, stream, **fields))

    async def close(self, reason: str) -> None:
        """Ask the connection to end (recorded as a disconnect with ``reason``)."""
        self._close_reason = reason
        if self._ws is not None:
            await self._ws.close()

    async def run(self) -> str:
        """Connect, subscribe and read until the connection ends; returns the disconnect reason."""
        reason = "cancelled"
        try:
            reason = await self._connect_and_read()
        except asyncio.CancelledError:
            self.end_kind = "shutdown"
            raise
        finally:
            self.ended_at = time.monotonic()
            self._control(
                "disconnect",
                reason=reason,
                url=self.url,
                frames=self._frames,
                connected_s=round(self.connected_for_s, 3),
            )
            for name in self.streams:
                state = self._intake.streams[name]
                if state.connection == self.conn_id:
                    state.watch_since_ns = None
            log.info("disconnected %s (%s, %d frames): %s", self.conn_id, self.route, self._frames, reason)
        return reason

    async def _connect_and_read(self) -> str:
        try:
            self._ws = await websockets.connect(
                self.url,
                max_size=self._config.max_frame_bytes,
                open_timeout=self._config.connect_timeout_s,
                close_timeout=CLOSE_TIMEOUT_S,
                compression=None,
            )
        except InvalidStatus as exc:
            self.retry_after_s = parse_retry_after(exc.response.headers.get("Retry-After"))
            self.end_kind = "rate_limited" if exc.response.status_code in (418, 429) else "connect_failed"
            return f"connect failed: HTTP {exc.response.status_code}"
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            self.end_kind = "connect_failed"
            return f"connect failed: {type(exc).__name__}: {exc}"
        if self._close_reason is not None:
            await self._ws.close()
            self.end_kind = "replaced"
            return self._close_reason
        self.connected_at = time.monotonic()
        now = self._intake.clock()
        for name in self.streams:
            state = self._intake.streams[name]
            state.connection = self.conn_id
            state.watch_since_ns = now
        self._control("connect", url=self.url, route=self.route, streams=self.streams)
        log.info("connected %s to %s with %d streams", self.conn_id, self.url, len(self.streams))
        try:
            subscribe = orjson.dumps({"method": "SUBSCRIBE", "params": self.streams, "id": 1})
            await self._ws.send(subscribe, text=True)
            await self._read(self._ws)
        except ConnectionClosed as exc:
            return self._closed_reason(exc)
        except OSError as exc:
            return f"socket error: {exc}"
        return "ended"

    def _closed_reason(self, exc: ConnectionClosed) -> str:
        if self._close_reason is not None:
            self.end_kind = "replaced"
            return self._close_reason
        self.end_kind = "server_close" if exc.rcvd is not None else "dropped"
        if exc.rcvd is not None:
            return f"closed by server: code {exc.rcvd.code} {exc.rcvd.reason}".rstrip()
        if exc.sent is not None:
            return f"closed by client: code {exc.sent.code} {exc.sent.reason}".rstrip()
        return "connection lost without a close frame"

    async def _read(self, ws: websockets.ClientConnection) -> None:
        intake = self._intake
        entries = intake.entries
        emit = intake.emit
        clock = intake.clock
        conn_id = self.conn_id
        recv = ws.recv
        got_data = False
        while True:
            raw = await recv(decode=False)
            now = clock()
            self._seq += 1
            self._frames += 1
            entry = entries.get(extract_stream(raw))  # type: ignore[arg-type]
            if entry is None:
                self._other_frame(raw, now)
                continue
            state = entry.state
            state.frames += 1
            state.bytes += len(raw)
            state.last_recv_ns = now
            emit(encode_frame(now, conn_id, self._seq, entry.name, raw))
            if entry.sequence is not None:
                intake.check_sequence(entry, raw, conn_id, self.next_seq)
            if not got_data:
                got_data = True
                self.first_data.set()

    def _other_frame(self, raw: bytes, now: int) -> None:
        """Subscribe replies become ``subscribed`` records; anything else is kept as a frame of its claimed stream."""
        if raw.startswith(b'{"result"') or raw.startswith(b'{"id"'):
            self._intake.emit(
                encode_control(
                    now,
                    self.conn_id,
                    self._seq,
                    "subscribed",
                    reply=raw.decode("utf-8", "replace"),
                    streams=self.streams,
                )
            )
            return
        claimed = extract_stream(raw)
        name = claimed.decode("utf-8", "replace") if claimed else "unknown"
        self._intake.emit(encode_frame(now, self.conn_id, self._seq, name, raw))

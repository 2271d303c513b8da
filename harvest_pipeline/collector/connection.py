"""One websocket connection: connect, subscribe, read every frame into the intake, record how it ended.

The receive loop is the hot path: bytes in (no UTF-8 decode, no JSON parse), a wall-clock timestamp, a stream-name
lookup, an encode and a non-blocking queue offer. Reconnecting is the shard's job (``shard.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import orjson
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.framing import split_frames
from harvest_pipeline.collector.intake import Intake
from harvest_pipeline.collector.sequencing import extract_stream
from harvest_pipeline.segments import Line, encode_control, encode_frame

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
        self._ws: BatchingClientConnection | None = None
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
        except Exception as exc:  # a bug or an unforeseen library error must cost a reconnect, not the shard
            log.exception("connection %s failed unexpectedly", self.conn_id)
            reason = f"internal error: {exc!r}"
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
                create_connection=BatchingClientConnection,
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

    async def _read(self, ws: BatchingClientConnection) -> None:
        ws.deliver_to(self._on_frames)
        while True:  # only messages websockets had to assemble (fragmented ones) arrive here; the rest are batched
            self._on_frames([await ws.recv(decode=False)])

    def _on_frames(self, batch: list[bytes]) -> None:
        """The hot path: every frame of one TCP read, stamped with the time of that read, into the queue."""
        intake = self._intake
        entries = intake.entries
        conn_id = self.conn_id
        now = intake.clock()
        lines: list[Line] = []
        got_data = False
        for raw in batch:
            self._seq += 1
            if raw.startswith(b'{"stream":"'):  # the combined-stream layout, inlined from extract_stream
                entry = entries.get(raw[11 : raw.find(b'"', 11)])
            else:
                entry = entries.get(extract_stream(raw))  # type: ignore[arg-type]
            if entry is None:
                lines.append(self._other_frame(raw, now))
                continue
            got_data = True
            state = entry.state
            state.frames += 1
            state.bytes += len(raw)
            state.last_recv_ns = now
            lines.append(encode_frame(now, conn_id, self._seq, entry.name, raw))
            sequence = entry.sequence
            if sequence is not None:
                gap = sequence.observe(raw)
                if gap is not None or sequence.needs_snapshot:
                    intake.emit_many(lines)
                    lines = []
                    intake.after_sequence_event(entry, gap, conn_id, self.next_seq)
        self._frames += len(batch)
        intake.emit_many(lines)
        if got_data and not self.first_data.is_set():
            self.first_data.set()

    def _other_frame(self, raw: bytes, now: int) -> Line:
        """Subscribe replies become ``subscribed`` records; anything else is kept as a frame of its claimed stream."""
        if raw.startswith(b'{"result"') or raw.startswith(b'{"id"'):
            reply = raw.decode("utf-8", "replace")
            return encode_control(now, self.conn_id, self._seq, "subscribed", reply=reply, streams=self.streams)
        claimed = extract_stream(raw)
        name = claimed.decode("utf-8", "replace") if claimed else "unknown"
        return encode_frame(now, self.conn_id, self._seq, name, raw)


class BatchingClientConnection(websockets.ClientConnection):
    """A websockets connection whose plain data frames bypass websockets' parser (see ``framing.py``).

    websockets still does the handshake, pings, pongs, close, fragmented messages and size limits: it is fed the
    HTTP response and, afterwards, every frame that is not a complete unfragmented data frame, always whole. Data
    frames of one TCP read go to ``on_frames`` as one batch (held until ``deliver_to`` names the receiver).
    """

    _buffer = b""
    _mode = "handshake"
    _in_fragmented_message = False
    on_frames: Callable[[list[bytes]], None] | None = None
    _held: list[bytes] | None = None

    def deliver_to(self, on_frames: Callable[[list[bytes]], None]) -> None:
        """Start handing data frames to ``on_frames`` (including any that arrived before)."""
        self.on_frames = on_frames
        held, self._held = self._held, None
        if held:
            on_frames(held)

    def data_received(self, data: bytes) -> None:
        """Split plain data frames out; give websockets everything else."""
        if self._mode == "frames":
            self._split(self._buffer + data)
        elif self._mode == "passthrough":
            super().data_received(data)
        else:
            self._handshake_data(self._buffer + data)

    def eof_received(self) -> None:
        """Let websockets see any incomplete frame before the end of the stream."""
        if self._buffer:
            rest, self._buffer = self._buffer, b""
            super().data_received(rest)
        return super().eof_received()

    def _handshake_data(self, data: bytes) -> None:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self._buffer = data
            return
        self._buffer = b""
        super().data_received(data[: end + 4])
        if self.protocol.state is State.OPEN:
            self._mode = "frames"
            self._split(data[end + 4 :])
        else:
            self._mode = "passthrough"
            super().data_received(data[end + 4 :])

    def _split(self, data: bytes) -> None:
        split = split_frames(data, self.protocol.max_message_size or 1 << 62, self._in_fragmented_message)
        self._in_fragmented_message = split.in_fragmented_message
        self._buffer = data[split.consumed :]
        if split.others:
            super().data_received(split.others)
        if split.payloads:
            if self.on_frames is not None:
                self.on_frames(split.payloads)
            else:
                self._held = (self._held or []) + split.payloads
        if split.oversized:
            self._mode = "passthrough"
            rest, self._buffer = self._buffer, b""
            super().data_received(rest)

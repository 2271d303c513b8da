"""One websocket connection: connect, subscribe, read every frame into the intake, record how it ended.

The receive loop is the hot path: bytes in (no UTF-8 decode, no JSON parse), a wall-clock timestamp, a stream-name
lookup, an encode and a non-blocking queue offer. Reconnecting is the shard's job (``shard.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

import orjson
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import Event, State

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.framing import BINARY_FRAME_REASON, LongFrame, SetAside, set_aside, split_frames
from harvest_pipeline.collector.intake import Intake, StreamEntry
from harvest_pipeline.collector.sequencing import Gap, extract_stream
from harvest_pipeline.segments import (
    MAX_BAD_FRAME_BYTES,
    Line,
    encode_bad_frame,
    encode_control,
    encode_frame,
    unembeddable_reason,
)

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
    """A single connection to one endpoint (a route, or the unrouted ``/stream``) carrying a fixed list of streams."""

    def __init__(self, conn_id: str, route: str, streams: list[str], intake: Intake, config: CollectorConfig):
        self.conn_id = conn_id
        self.route = route
        self.streams = streams
        self.url = config.stream_url(route)
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
        self._connecting: asyncio.Future[websockets.ClientConnection] | None = None
        self._close_reason: str | None = None
        self._unprocessed = 0

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
        elif self._connecting is not None:  # still in the handshake: give it up now, not at the connect timeout
            self._connecting.cancel()

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
                state = self._intake.streams.get(name)  # None: a stream removed from the recorded symbols
                if state is not None and state.connection == self.conn_id:
                    state.watch_since_ns = None
            log.info("disconnected %s (%s, %d frames): %s", self.conn_id, self.route, self._frames, reason)
        return reason

    async def _connect_and_read(self) -> str:
        connect = websockets.connect(
            self.url,
            create_connection=BatchingClientConnection,
            max_size=self._config.max_frame_bytes,
            open_timeout=self._config.connect_timeout_s,
            close_timeout=CLOSE_TIMEOUT_S,
            compression=None,
        )
        self._connecting = asyncio.ensure_future(connect)
        try:
            ws = await self._connecting
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._close_reason is None or (task is not None and task.cancelling()):
                raise  # the task itself was cancelled, not only the handshake
            self.end_kind = "replaced"
            return self._close_reason
        except InvalidStatus as exc:
            self.retry_after_s = parse_retry_after(exc.response.headers.get("Retry-After"))
            self.end_kind = "rate_limited" if exc.response.status_code in (418, 429) else "connect_failed"
            return f"connect failed: HTTP {exc.response.status_code}"
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            self.end_kind = "connect_failed"
            return f"connect failed: {type(exc).__name__}: {exc}"
        assert isinstance(ws, BatchingClientConnection)
        self._ws = ws
        if self._close_reason is not None:
            await ws.close()
            self.end_kind = "replaced"
            return self._close_reason
        self.connected_at = time.monotonic()
        now = self._intake.clock()
        for name in self.streams:
            state = self._intake.streams.get(name)
            if state is not None:
                state.connection = self.conn_id
                state.watch_since_ns = now
        self._control("connect", url=self.url, route=self.route, streams=self.streams)
        log.info("connected %s to %s with %d streams", self.conn_id, self.url, len(self.streams))
        try:
            subscribe = orjson.dumps({"method": "SUBSCRIBE", "params": self.streams, "id": 1})
            await ws.send(subscribe, text=True)
            await self._read(ws)
        except ConnectionClosed as exc:
            return self._closed_reason(exc)
        except OSError as exc:
            return f"socket error: {exc}"
        return "ended"

    def _closed_reason(self, exc: ConnectionClosed) -> str:
        if self._close_reason is not None:
            self.end_kind = "replaced"
            return self._close_reason
        if self._ws is not None and self._ws.delivery_error is not None:
            return self._ws.delivery_error
        self.end_kind = "server_close" if exc.rcvd is not None else "dropped"
        if exc.rcvd is not None:
            return f"closed by server: code {exc.rcvd.code} {exc.rcvd.reason}".rstrip()
        if exc.sent is not None:
            return f"closed by client: code {exc.sent.code} {exc.sent.reason}".rstrip()
        return "connection lost without a close frame"

    async def _read(self, ws: BatchingClientConnection) -> None:
        ws.deliver_to(self._on_frames)
        while True:  # only messages websockets had to assemble (fragmented ones) arrive here; the rest are batched
            message = await ws.recv(decode=False)
            if ws.last_message_was_binary():
                message = set_aside(message[:MAX_BAD_FRAME_BYTES], BINARY_FRAME_REASON, len(message))
            self._on_frames([message])

    def _on_frames(self, batch: list[bytes]) -> None:
        """The hot path: every frame of one TCP read, stamped with the time of that read, into the queue.

        Each frame gets the next sequence number and exactly one record (plus a gap record when it reveals one).
        Whatever a frame holds, it cannot cost its neighbours: an unexpected error while handling one frame makes
        that frame a ``bad_frame`` and the loop goes on (a ``try`` costs nothing in CPython 3.11 until it raises).
        """
        intake = self._intake
        entries = intake.entries
        conn_id = self.conn_id
        now = intake.clock()
        lines: list[Line] = []
        got_data = False
        for raw in batch:
            self._seq += 1
            try:
                if raw.startswith(b'{"stream":"'):  # the combined-stream layout, inlined from extract_stream
                    entry = entries.get(raw[11 : raw.find(b'"', 11)])
                else:
                    entry = entries.get(extract_stream(raw))  # type: ignore[arg-type]
                if entry is None or raw.__class__ is not bytes:
                    lines.append(self._other_frame(raw, now))
                    continue
                got_data = True
                state = entry.state
                state.frames += 1
                state.bytes += len(raw)
                state.last_recv_ns = now
                sequence = entry.sequence
                if sequence is None:
                    lines.append(encode_frame(now, conn_id, self._seq, entry.name, raw))
                    continue
                verdict = sequence.observe(raw)
                if verdict is None and not sequence.needs_snapshot:
                    lines.append(encode_frame(now, conn_id, self._seq, entry.name, raw))
                    continue
                if isinstance(verdict, str):  # an implausible id: stored aside, and the tracker did not move
                    lines.append(encode_bad_frame(now, conn_id, self._seq, entry.name, raw, verdict))
                    continue
                lines.append(encode_frame(now, conn_id, self._seq, entry.name, raw))
            except Exception as exc:  # a bug must cost this frame only, never the connection or its neighbours
                lines.append(self._unprocessed_frame(raw, now, exc))
                continue
            intake.emit_many(lines)
            lines = []
            self._sequence_event(entry, verdict)
        self._frames += len(batch)
        intake.emit_many(lines)
        if got_data and not self.first_data.is_set():
            self.first_data.set()

    def _sequence_event(self, entry: StreamEntry, gap: Gap | None) -> None:
        """Record the gap a stored frame revealed and/or ask for the snapshot it needs (after the frame's record)."""
        try:
            self._intake.after_sequence_event(entry, gap, self.conn_id, self.next_seq)
        except Exception:  # the frame is stored; a failure here must not end the connection
            log.exception("connection %s could not record a sequence event on %s", self.conn_id, entry.name)

    def _other_frame(self, raw: bytes, now: int) -> Line:
        """Subscribe replies become ``subscribed`` records; anything else is a ``bad_frame``: set-aside frames
        (binary, oversized) with their reason, others because they name no stream this collector subscribed (so
        an exchange-side mix-up can never become Parquet of a symbol nobody asked for)."""
        if isinstance(raw, SetAside):
            stream = self._claimed_stream(raw)
            return encode_bad_frame(now, self.conn_id, self._seq, stream, raw, raw.reason, raw.length)
        if raw.startswith(b'{"result"') or raw.startswith(b'{"id"'):
            reply = raw.decode("utf-8", "replace")
            return encode_control(now, self.conn_id, self._seq, "subscribed", reply=reply, streams=self.streams)
        claimed = extract_stream(raw)
        name = claimed.decode("utf-8", "replace") if claimed else "unknown"
        reason = unembeddable_reason(raw) or (
            f"stream {name!r} is not subscribed by this collector" if claimed else "frame names no stream"
        )
        return encode_bad_frame(now, self.conn_id, self._seq, name, raw, reason)

    def _unprocessed_frame(self, raw: bytes, now: int, exc: Exception) -> Line:
        """The ``bad_frame`` for a frame whose handling raised (with this frame's sequence number)."""
        self._unprocessed += 1
        if self._unprocessed == 1:  # a bug may hit every frame: one log line (with the traceback) is enough
            log.error(
                "connection %s could not process a frame; it and any later ones become bad_frame records",
                self.conn_id,
                exc_info=exc,
            )
        reason = f"collector could not process frame: {type(exc).__name__}: {exc}"
        return encode_bad_frame(now, self.conn_id, self._seq, self._claimed_stream(raw), bytes(raw), reason)

    def _claimed_stream(self, raw: bytes) -> str:
        """The subscribed stream a frame names, else ``unknown`` (for records whose frame is not trusted)."""
        entry = self._intake.entries.get(extract_stream(raw))  # type: ignore[arg-type]
        return entry.name if entry is not None else "unknown"


class BatchingClientConnection(websockets.ClientConnection):
    """A websockets connection whose plain data frames bypass websockets' parser (see ``framing.py``).

    websockets still does the handshake, pings, pongs, close and fragmented messages: it is fed the HTTP response
    and, afterwards, every frame that is not a complete unfragmented data frame, always whole. Data frames of one
    TCP read go to ``on_frames`` as one batch (held until ``deliver_to`` names the receiver); binary ones as
    ``SetAside``. A plain data frame longer than ``max_size`` does not close the connection: its first 64 KiB are
    kept, the rest is dropped as it streams in, and it is delivered as a ``SetAside`` once complete. Fragmented
    or masked frames still go to websockets, which closes the connection with 1009 when one is too large (a server
    sending those breaks the protocol Binance speaks, so the reconnect is acceptable there).
    """

    _buffer = b""
    _mode = "handshake"
    _in_fragmented_message = False
    _long_frame: LongFrame | None = None
    on_frames: Callable[[list[bytes]], None] | None = None
    _held: list[bytes] | None = None
    _message_is_binary: deque[bool] | None = None
    delivery_error: str | None = None
    """Why the connection was aborted when handing frames over failed (the disconnect reason)."""

    def deliver_to(self, on_frames: Callable[[list[bytes]], None]) -> None:
        """Start handing data frames to ``on_frames`` (including any that arrived before)."""
        self.on_frames = on_frames
        held, self._held = self._held, None
        if held:
            on_frames(held)

    def last_message_was_binary(self) -> bool:
        """Whether the message ``recv`` returned last (one websockets assembled) was sent as binary."""
        return bool(self._message_is_binary and self._message_is_binary.popleft())

    def process_event(self, event: Event) -> None:
        """Note each message's type as websockets parses its first frame (``recv(decode=False)`` does not say)."""
        if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
            if self._message_is_binary is None:
                self._message_is_binary = deque()
            self._message_is_binary.append(event.opcode is Opcode.BINARY)
        super().process_event(event)

    def data_received(self, data: bytes) -> None:
        """Split plain data frames out; give websockets everything else."""
        if self._mode == "frames":
            self._split(self._buffer + data if self._buffer else data)
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
        max_size = self.protocol.max_message_size or 1 << 62
        batch: list[bytes] = []
        if self._long_frame is not None:
            data = self._continue_long_frame(data, batch)
        split = None
        while self._long_frame is None:
            split = split_frames(data, max_size, self._in_fragmented_message)
            self._in_fragmented_message = split.in_fragmented_message
            if split.others:
                super().data_received(split.others)
            batch += split.payloads
            data = data[split.consumed :]
            if split.long_frame is None:
                break
            self._long_frame = LongFrame(split.long_frame, max_size, MAX_BAD_FRAME_BYTES)
            data = self._continue_long_frame(data, batch)
        self._buffer = data
        if batch:
            if self.on_frames is not None:
                self._deliver(self.on_frames, batch)
            else:
                self._held = (self._held or []) + batch
        if split is not None and split.oversized:
            self._mode = "passthrough"
            rest, self._buffer = self._buffer, b""
            super().data_received(rest)

    def _deliver(self, on_frames: Callable[[list[bytes]], None], batch: list[bytes]) -> None:
        """Hand a batch over; should that fail (a bug past the per-frame guard), abort with the real reason rather
        than let asyncio abort the transport, which would be recorded as a lost connection."""
        try:
            on_frames(batch)
        except Exception as exc:
            log.exception("could not hand received frames over; aborting the connection")
            self.delivery_error = f"internal error: {type(exc).__name__}: {exc}"
            self.transport.abort()

    def _continue_long_frame(self, data: bytes, batch: list[bytes]) -> bytes:
        """Feed ``data`` to the oversized frame in progress; returns what follows it (once it is complete)."""
        long_frame = self._long_frame
        assert long_frame is not None
        taken = long_frame.feed(data)
        if long_frame.remaining:
            return b""
        batch.append(long_frame.payload())
        self._long_frame = None
        return data[taken:]

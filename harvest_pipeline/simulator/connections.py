"""Client connections and the hub that fans frames out to them.

Each connection has a bounded queue of frames and one sender task draining it into the socket. Publishing never
waits: a client whose queue is full is dropped as too slow (the exchange does the same) instead of being buffered for.
Per-frame faults (stalls, bad frames, repeats) are applied here, and every frame is counted when it reaches the socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from harvest_pipeline.simulator.accounting import ConnectionRecord, StreamTally
from harvest_pipeline.simulator.faults import MALFORMED, FaultState
from harvest_pipeline.simulator.wire import combined_prefix, route_of

log = logging.getLogger(__name__)

DATA, BAD, REPEAT, CONTROL = range(4)
"""What a queued frame is, for the accounting."""

QueuedFrame = tuple[StreamTally | None, int, bytes, int]
"""``(tally, exchange id, payload, what)``."""
MAX_BATCH = 256
"""Most frames handed to the socket in one write."""


def bad_frame(kind: str, payload: bytes) -> bytes:
    """An invalid frame standing in for ``payload``: garbage JSON (``malformed``) or its first half (``truncated``)."""
    if kind == MALFORMED:
        return b'{"e":"simulatorFault","data":{not json' + payload[:8]
    return payload[: max(1, len(payload) // 2)]


def _count(frame: QueuedFrame) -> None:
    tally, frame_id, payload, what = frame
    if tally is None:
        return
    if what == DATA:
        tally.count_frame(frame_id, len(payload))
    elif what == BAD:
        tally.malformed += 1
    else:
        tally.repeated += 1


class ClientConnection:
    """One websocket client: its subscriptions, its bounded send queue and its accounting record."""

    def __init__(
        self, ws: ServerConnection, record: ConnectionRecord, combined: bool, queue_limit: int, opened_at: float
    ):
        self.ws = ws
        self.opened_at = opened_at
        """Loop clock time of the handshake, for the lifetime cut."""
        self.record = record
        self.combined = combined
        self.streams: list[str] = []
        self.queue_limit = queue_limit
        self._pending: deque[QueuedFrame] = deque()
        self._wakeup = asyncio.Event()
        self.closed = False
        self._control_times: deque[float] = deque()
        self._close_task: asyncio.Task[None] | None = None
        """Kept referenced: the event loop holds tasks only weakly."""

    @property
    def connection_id(self) -> str:
        """Its id (``c1``, ``c2``, ...)."""
        return self.record.connection_id

    @property
    def route(self) -> str | None:
        """``public``, ``market``, ``private`` or ``legacy`` on a routed market; None on an unrouted one (every
        stream is delivered)."""
        return self.record.route

    def control_rate_exceeded(self, now: float, per_second: int) -> bool:
        """Record an incoming control message; True when more than ``per_second`` arrived within one second."""
        times = self._control_times
        times.append(now)
        while times[0] <= now - 1.0:
            times.popleft()
        return len(times) > per_second

    def offer(self, frame: QueuedFrame) -> None:
        """Queue a frame without waiting; drops the client when its queue is full."""
        if self.closed:
            return
        if len(self._pending) >= self.queue_limit:
            self.drop(f"slow consumer: {self.queue_limit} frames queued")
            return
        self._pending.append(frame)
        self._wakeup.set()

    async def run_sender(self) -> None:
        """Send queued frames in order until the connection closes, counting each one as it is handed to the socket.

        Frames waiting together are framed by the websockets protocol object and written with one socket write; the
        last frame of each batch goes through ``send`` so websockets' flow control (drain) still applies.
        """
        pending, ws = self._pending, self.ws
        try:
            while not self.closed:
                while pending:
                    if len(pending) > 1 and ws.protocol.state is State.OPEN:
                        for _ in range(min(len(pending), MAX_BATCH) - 1):
                            frame = pending.popleft()
                            ws.protocol.send_text(frame[2])
                            _count(frame)
                        ws.transport.write(b"".join(ws.protocol.data_to_send()))
                    frame = pending.popleft()
                    await ws.send(frame[2], text=True)
                    _count(frame)
                self._wakeup.clear()
                await self._wakeup.wait()
        except ConnectionClosed:
            return

    async def flush(self, deadline: float) -> None:
        """Wait until every queued frame was handed to the socket (or the connection closed, or the loop clock
        passed ``deadline``): at stop, what the exchange published is sent before the close frame."""
        loop = asyncio.get_running_loop()
        while self._pending and not self.closed and loop.time() < deadline:
            await asyncio.sleep(0.005)

    def drop(self, reason: str) -> None:
        """Cut the connection abruptly (no close frame), like a network failure or the exchange dropping a client."""
        if self.closed:
            return
        log.info("dropping connection %s (%s)", self.connection_id, reason)
        self._mark_closed(reason)
        self.ws.transport.abort()

    def close(self, reason: str) -> None:
        """Close the connection with a normal close frame (used for the lifetime cut and shutdown)."""
        if self.closed:
            return
        log.info("closing connection %s (%s)", self.connection_id, reason)
        self._mark_closed(reason)
        self._close_task = asyncio.get_running_loop().create_task(self.ws.close(1000, reason[:100]))

    def _mark_closed(self, reason: str) -> None:
        self.closed = True
        if self.record.close_reason is None:
            self.record.close_reason = reason
        self._pending.clear()
        self._wakeup.set()


class Hub:
    """Which connection gets which stream; publishes frames to them with the armed faults applied."""

    def __init__(self, faults: FaultState):
        self.faults = faults
        self._subscribers: dict[str, list[ClientConnection]] = {}
        self._prefixes: dict[str, bytes] = {}

    def has_subscribers(self) -> bool:
        """Whether any connection receives any stream."""
        return any(self._subscribers.values())

    def wants(self, stream: str) -> bool:
        """Whether anyone would receive ``stream`` (lets the producer skip encoding)."""
        return bool(self._subscribers.get(stream))

    def subscribe(self, conn: ClientConnection, streams: Iterable[str]) -> None:
        """Add streams to a connection. A stream on the wrong route is listed but never delivered (Binance routing),
        so ``private`` and ``legacy`` connections get nothing; a connection of an unrouted market gets every stream."""
        for stream in streams:
            if stream in conn.streams:
                continue
            conn.streams.append(stream)
            conn.record.tally(stream)
            if conn.route is None or route_of(stream) == conn.route:
                self._subscribers.setdefault(stream, []).append(conn)

    def unsubscribe(self, conn: ClientConnection, streams: Iterable[str]) -> None:
        """Remove streams from a connection."""
        for stream in streams:
            if stream in conn.streams:
                conn.streams.remove(stream)
            subscribers = self._subscribers.get(stream)
            if subscribers and conn in subscribers:
                subscribers.remove(conn)

    def remove(self, conn: ClientConnection) -> None:
        """Forget a closed connection."""
        self.unsubscribe(conn, list(conn.streams))

    def send_control(self, conn: ClientConnection, payload: bytes) -> None:
        """Queue a control reply (not counted as a frame)."""
        conn.offer((None, 0, payload, CONTROL))

    def publish(self, stream: str, frame_id: int, payload: bytes, now: float) -> None:
        """Send one data frame of ``stream`` to every subscriber, raw or wrapped as each connection expects."""
        subscribers = self._subscribers.get(stream)
        if not subscribers:
            return
        faults = self.faults
        bad, repeat, stalled_connections = None, False, False
        if faults.has_stream_faults():
            if faults.stream_stalled(stream, now):
                return
            bad, repeat = faults.take_frame_faults(stream)
            stalled_connections = bool(faults.stalled_connections)
        combined = None
        for conn in tuple(subscribers):
            if stalled_connections and faults.connection_stalled(conn.connection_id, now):
                continue
            if conn.combined:
                if combined is None:
                    combined = self._combined(stream, payload)
                frame = combined
            else:
                frame = payload
            tally = conn.record.streams[stream]
            if bad is not None:
                conn.offer((tally, frame_id, bad_frame(bad, frame), BAD))
            conn.offer((tally, frame_id, frame, DATA))
            if repeat:
                conn.offer((tally, frame_id, frame, REPEAT))

    def _combined(self, stream: str, payload: bytes) -> bytes:
        prefix = self._prefixes.get(stream)
        if prefix is None:
            prefix = self._prefixes[stream] = combined_prefix(stream)
        return prefix + payload + b"}"

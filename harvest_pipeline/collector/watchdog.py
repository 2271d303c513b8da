"""The per-stream watchdog: a stream silent for too long gets its connection replaced, never the process ended.

A stream counts as silent from the moment its connection opened (a wrong-route subscription is acknowledged and then
sends nothing, so "never spoke" must fire too). A stream that stays silent after replacements is watched with a
doubling threshold (up to 16x) so a dead market does not cause a connection storm.

Quiet streams (``config.QUIET_STREAM_KINDS``: liquidations, silent for hours on a calm market) are not watched: their
silence proves nothing. Their connection is still watched through the other streams it carries (``streams_by_route``
puts every kind of a symbol on the same route together) and through websocket pings.

The streams watched are the intake's at each check: a symbol removed from the recording leaves them before its
connection closes, so a stream being closed is never reported silent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from harvest_pipeline.collector.intake import Intake
from harvest_pipeline.collector.shard import Shard
from harvest_pipeline.segments import encode_control

log = logging.getLogger(__name__)

MAX_THRESHOLD_DOUBLINGS = 4


class Watchdog:
    """Checks every stream's silence a few times per watchdog period."""

    def __init__(self, intake: Intake, shards_by_stream: Mapping[str, Shard], watchdog_s: float):
        self._intake = intake
        self._shards = shards_by_stream
        self._watchdog_ns = int(watchdog_s * 1e9)
        self._interval_s = min(1.0, watchdog_s / 4)
        self._consecutive: dict[str, int] = {}
        self.on_fire: Callable[[str], None] = lambda stream: None
        """Told every stream it fires for (after the connection's replacement was asked for)."""

    async def run(self) -> None:
        """Check forever (cancelled at shutdown)."""
        while True:
            await asyncio.sleep(self._interval_s)
            self.check(self._intake.clock())

    def check(self, now_ns: int) -> list[str]:
        """Fire for every stream silent past its threshold; returns the streams fired for."""
        fired = []
        for name, state in list(self._intake.streams.items()):
            if state.quiet:
                continue
            silent_ns = state.silent_for_ns(now_ns)
            if silent_ns is None:
                continue
            spoke = state.last_recv_ns is not None and state.watch_since_ns is not None
            if spoke and state.last_recv_ns >= state.watch_since_ns:  # type: ignore[operator]
                self._consecutive[name] = 0
            consecutive = self._consecutive.get(name, 0)
            if silent_ns < self._watchdog_ns * 2 ** min(consecutive, MAX_THRESHOLD_DOUBLINGS):
                continue
            self._fire(name, silent_ns, now_ns)
            fired.append(name)
        return fired

    def _fire(self, name: str, silent_ns: int, now_ns: int) -> None:
        state = self._intake.streams[name]
        state.watchdog_fires += 1
        state.watch_since_ns = now_ns
        self._consecutive[name] = self._consecutive.get(name, 0) + 1
        self._intake.metrics.watchdog_fires.labels(name).inc()
        shard = self._shards.get(name)
        conn = shard.current if shard is not None else None
        conn_id = conn.conn_id if conn is not None else "none"
        seq = conn.next_seq() if conn is not None else 0
        silent_s = round(silent_ns / 1e9, 3)
        never = state.last_recv_ns is None
        self._intake.emit(
            encode_control(now_ns, conn_id, seq, "watchdog", name, silent_s=silent_s, never_received=never)
        )
        log.warning("watchdog: %s silent for %.1f s on %s; replacing the connection", name, silent_s, conn_id)
        if shard is not None:
            shard.request_replace(f"watchdog: {name} silent {silent_s:.1f} s")
        self.on_fire(name)

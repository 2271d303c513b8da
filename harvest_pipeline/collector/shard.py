"""A shard: a fixed set of streams on one route, kept on exactly one live connection (two while replacing one).

Reconnects use capped exponential backoff with jitter (reset once a connection has stayed up ``stable_after_s``) and
honour ``Retry-After``. Replacements (lifetime rotation before the 24 h cut, watchdog) overlap: the new connection
is opened and given ``rotation_overlap_s`` to deliver data before the old one is closed, so nothing is missed;
duplicates from the overlap are removed downstream by exchange ids. A change of the recorded symbols hands a shard
over to another shard the same way (``hand_over_to``; ``layout.py`` plans which).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.connection import Connection
from harvest_pipeline.collector.intake import Intake
from harvest_pipeline.collector.layout import ShardLayout

log = logging.getLogger(__name__)

HAND_OVER_POLL_S = 0.05


def backoff_delay(attempt: int, initial_s: float, cap_s: float, rng: random.Random) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): doubling from ``initial_s``, capped, jittered 50-100 %."""
    base = min(cap_s, initial_s * 2 ** min(attempt, 30))
    return base * rng.uniform(0.5, 1.0)


class Shard:
    """Owns the connections for one list of streams on one route."""

    def __init__(
        self,
        index: int,
        route: str,
        streams: list[str],
        intake: Intake,
        config: CollectorConfig,
        new_conn_id: Callable[[], str],
        rng: random.Random,
    ):
        self.index = index
        self.route = route
        self.streams = streams
        self.current: Connection | None = None
        self._intake = intake
        self._config = config
        self._new_conn_id = new_conn_id
        self._rng = rng
        self._wake = asyncio.Event()
        self._replace_reason: str | None = None
        self._stopping = False
        self._stop_reason = "shutdown"
        self._task: asyncio.Task[None] | None = None

    @property
    def layout(self) -> ShardLayout:
        """The route and streams of this shard."""
        return ShardLayout(self.route, tuple(self.streams))

    def start(self, delay_s: float | None = None) -> None:
        """Run the shard in a task, connecting after ``delay_s`` (default: staggered by its index)."""
        delay = self.index * self._config.connect_stagger_s if delay_s is None else delay_s
        self._task = asyncio.create_task(self._run(delay), name=f"shard-{self.index}-{self.route}")

    async def hand_over_to(self, successor: Shard, reason: str) -> None:
        """Close this shard once ``successor`` (already started) delivers data, or after ``rotation_overlap_s``."""
        deadline = time.monotonic() + self._config.rotation_overlap_s
        while time.monotonic() < deadline and not self._stopping:
            conn = successor.current
            if conn is not None and conn.first_data.is_set():
                break
            await asyncio.sleep(HAND_OVER_POLL_S)
        await self.stop(reason)

    def request_replace(self, reason: str) -> None:
        """Replace the current connection with overlap (watchdog); ignored while a replacement is pending."""
        if self._replace_reason is None:
            self._replace_reason = reason
            self._wake.set()

    async def stop(self, reason: str = "shutdown") -> None:
        """Close the connection(s), recorded as a disconnect with ``reason``, and end the shard."""
        if not self._stopping:
            self._stop_reason = reason
        self._stopping = True
        self._wake.set()
        task = self._task
        if task is None or task.done():
            return
        try:  # shielded: a caller cancelled meanwhile (shutdown during a hand-over) leaves the shard ending cleanly
            await asyncio.wait_for(asyncio.shield(task), self._config.connect_timeout_s)
        except TimeoutError:
            log.warning("shard %d did not stop in time; cancelled", self.index)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        attempt = 0
        while not self._stopping:
            conn = self._open()
            task = asyncio.create_task(conn.run())
            conn, task = await self._supervise(conn, task)
            if self._stopping:
                await self._end(conn, task, self._stop_reason)
                return
            await task
            self._intake.metrics.reconnects.labels(conn.end_kind).inc()
            attempt = 0 if conn.connected_for_s >= self._config.stable_after_s else attempt + 1
            delay = backoff_delay(attempt, self._config.backoff_initial_s, self._config.backoff_max_s, self._rng)
            delay = max(delay, conn.retry_after_s or 0.0)
            log.info("reconnecting shard %d (%s) in %.1f s (attempt %d)", self.index, self.route, delay, attempt + 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait_stop(), delay)

    async def _wait_stop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            await self._wake.wait()

    def _open(self) -> Connection:
        conn = Connection(self._new_conn_id(), self.route, self.streams, self._intake, self._config)
        self.current = conn
        return conn

    def _rotation_deadline(self, conn: Connection) -> float:
        """When ``conn`` is replaced: before the exchange's lifetime cut, jittered so shards rotate apart."""
        jitter = self._rng.uniform(0, self._config.rotation_jitter_s)
        return conn.created_at + max(1.0, self._config.max_connection_age_s - jitter)

    async def _supervise(self, conn: Connection, task: asyncio.Task[str]) -> tuple[Connection, asyncio.Task[str]]:
        """Wait while ``conn`` runs, replacing it with overlap when its lifetime is up or the watchdog asks."""
        deadline = self._rotation_deadline(conn)
        while not self._stopping:
            self._wake.clear()
            waker = asyncio.create_task(self._wake.wait())
            timeout = max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait({task, waker}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            waker.cancel()
            if task in done or self._stopping:
                break
            kind = "watchdog" if self._replace_reason else "rotation"
            reason = self._replace_reason or "lifetime rotation"
            new = self._open()
            new_task = asyncio.create_task(new.run())
            ready = asyncio.create_task(new.first_data.wait())
            overlap = self._config.rotation_overlap_s
            await asyncio.wait({ready, new_task}, timeout=overlap, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            log.info("replacing %s by %s: %s", conn.conn_id, new.conn_id, reason)
            self._intake.metrics.reconnects.labels(kind).inc()
            await self._end(conn, task, f"replaced: {reason}")
            self._replace_reason = None
            conn, task = new, new_task
            deadline = self._rotation_deadline(conn)
        return conn, task

    async def _end(self, conn: Connection, task: asyncio.Task[str], reason: str) -> None:
        await conn.close(reason)
        try:
            await asyncio.wait_for(asyncio.shield(task), self._config.connect_timeout_s)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

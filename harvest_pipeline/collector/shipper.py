"""Shipping this collector's sealed segments to the installation's bucket: a network outage costs disk, not data.

Each sealed segment goes up as its data object, read back and checked against the size and sha256 of the local file
(which must be the ones its sidecar was sealed with: a mismatch is logged and the file shipped as it is, for
compaction to report), then its sidecar, read back too: the sidecar in the bucket is the marker that the segment
there is complete (a reader lists sidecars). Only then may the local copy go, and never the newest one of this
collector: a restart's resumption (``collector.resume``) reads the tail of it. Anything not yet shipped stays in the
local ``sealed/`` folder, is counted as the backlog, and is shipped by a later attempt or a later run of the
collector, in name (time) order. A failed attempt backs off (doubling, capped, jittered) and is retried forever: the
shipper never gives up on a segment and never deletes one it could not verify. It runs in a worker thread (pyarrow
releases the GIL for the transfers), off the event loop and off the writer thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harvest_pipeline.segments import (
    META_SUFFIX,
    SealedSegment,
    list_sealed_segments,
    sealed_object_name,
    segment_collector_id,
)

if TYPE_CHECKING:
    from harvest_pipeline.objectstore import ObjectStore  # pyarrow is imported only by collectors that ship

log = logging.getLogger(__name__)

POLL_S = 1.0
"""How often the local ``sealed/`` folder is looked at when everything is shipped."""


@dataclass
class ShippingState:
    """What ``/health`` and the metrics report about shipping."""

    backlog_segments: int = 0
    backlog_bytes: int = 0
    shipped_segments: int = 0
    shipped_bytes: int = 0
    failures: int = 0
    last_error: str | None = None
    last_shipped: str | None = None
    last_success_ns: int | None = None

    def to_json(self) -> dict[str, object]:
        """The health JSON's ``shipping`` object."""
        return dict(self.__dict__)


def backoff_s(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Delay after failed attempt ``attempt`` (0-based): doubling from ``initial_s``, capped, jittered 50-100 %."""
    return min(max_s, initial_s * 2**attempt) * rng.uniform(0.5, 1.0)


class SegmentShipper:
    """Ships the sealed segments of ``collector_id`` under ``sealed_root`` to ``store``."""

    def __init__(
        self,
        store: ObjectStore,
        sealed_root: Path,
        collector_id: str,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 30.0,
        clock: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
    ):
        self.store = store
        self.sealed_root = sealed_root
        self.collector_id = collector_id
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.state = ShippingState()
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        """One pass at a time: a pass cancelled at shutdown may still run in its thread when the final one starts."""
        self._shipped: set[str] = set()
        """Names shipped by this process (a kept newest one shipped by an earlier run goes up once more: same bytes,
        same name)."""

    def own_segments(self) -> list[SealedSegment]:
        """This collector's sealed segments on local disk (data and sidecar both present), oldest first."""
        return [s for s in list_sealed_segments(self.sealed_root) if segment_collector_id(s.name) == self.collector_id]

    def ship_pending(self) -> int:
        """Ship every local segment not shipped yet, oldest first, then remove the shipped local copies but the
        newest; returns how many were shipped. Raises ``OSError`` at the first failure (what is left stays local)."""
        with self._lock:
            return self._ship_pending()

    def _ship_pending(self) -> int:
        segments = self.own_segments()
        pending = [s for s in segments if s.name not in self._shipped]
        self._count_backlog(pending)
        shipped = 0
        for segment in pending:
            size = self._ship(segment)
            self._shipped.add(segment.name)
            shipped += 1
            state = self.state
            state.shipped_segments += 1
            state.shipped_bytes += size
            state.last_shipped, state.last_success_ns = segment.name, self._clock()
            state.backlog_segments -= 1
            state.backlog_bytes -= size
        if segments:
            self._remove_shipped_copies(segments[:-1])
        return shipped

    def _ship(self, segment: SealedSegment) -> int:
        meta = segment.load_meta()
        name = sealed_object_name(segment.name)
        from harvest_pipeline.objectstore import file_digest  # pyarrow: only in collectors that ship

        size, sha256 = file_digest(segment.path)
        if (size, sha256) != (meta.bytes, meta.sha256):
            # bit rot on this disk: the bucket gets what the disk holds, and compaction reports the segment as it
            # would locally, instead of one bad file blocking every later segment here
            log.warning("%s differs from its sidecar (%d bytes, sha256 %s…); shipped as it is", name, size, sha256[:12])
        self.store.put_verified(segment.path, name, size, sha256)
        sidecar = segment.meta_path.read_bytes()
        sidecar_sha256 = hashlib.sha256(sidecar).hexdigest()
        self.store.put_verified(segment.meta_path, name + META_SUFFIX, len(sidecar), sidecar_sha256)
        return size

    def _remove_shipped_copies(self, older: list[SealedSegment]) -> None:
        for segment in older:
            if segment.name in self._shipped:
                segment.path.unlink(missing_ok=True)  # data first: a data file without sidecar is reported, not lost
                segment.meta_path.unlink(missing_ok=True)

    def _count_backlog(self, pending: list[SealedSegment]) -> None:
        total = 0
        for segment in pending:
            with contextlib.suppress(OSError):
                total += segment.path.stat().st_size
        self.state.backlog_segments, self.state.backlog_bytes = len(pending), total

    async def run(self, stop: asyncio.Event) -> None:
        """Ship until ``stop`` is set, backing off while the bucket fails."""
        attempt = 0
        while not stop.is_set():
            wait_s = POLL_S
            try:
                await asyncio.to_thread(self.ship_pending)
                if attempt:
                    log.info("shipping to %s works again", self.store.location.url)
                attempt, self.state.last_error = 0, None
            except OSError as exc:
                wait_s = backoff_s(attempt, self.retry_initial_s, self.retry_max_s, self._rng)
                attempt += 1
                self.state.failures += 1
                self.state.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "shipping to %s failed (attempt %d, %d segments / %.1f MB waiting locally), retrying in %.1f s: %s",
                    self.store.location.url,
                    attempt,
                    self.state.backlog_segments,
                    self.state.backlog_bytes / 1e6,
                    wait_s,
                    exc,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait_s)

    async def final_pass(self, deadline_s: float) -> bool:
        """After the writer sealed everything at shutdown: one more attempt within ``deadline_s``; True when nothing
        is left to ship (what is left is shipped by the next start)."""
        try:
            await asyncio.wait_for(asyncio.to_thread(self.ship_pending), deadline_s)
        except (OSError, TimeoutError) as exc:
            log.warning("%d segments left to ship at the next start: %s", self.state.backlog_segments, exc)
            return False
        return True

"""The segment a healing run writes (collector id ``backfill``), and the lock that lets one run write at a time.

The segment is written and sealed with the collector's own machinery (``segments.OpenSegment``: positional appends,
then fsync, sidecar and atomic rename into ``sealed/date=YYYY-MM-DD/``), so the compaction sensor finds it like any
other. It opens at the first line: a run with nothing to fill leaves no segment. Runs hold the lock of
``open/backfill/`` (the same ``.lock`` file a collector holds on its own open directory), so concurrent runs, from
the CLI or from Dagster, share the REST budget by taking turns; a run first seals whatever a killed run left open
there, with the collector's crash recovery.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence

from harvest_pipeline.markets import USDM, Market
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import Line, OpenSegment, SegmentNamer, recover_open_segments

log = logging.getLogger(__name__)

BACKFILL_COLLECTOR_ID = "backfill"
"""The collector id of USDⓈ-M healing runs; other markets' runs are ``backfill.<market>`` (``backfill_collector_id``),
each with its own open directory and lock, so their segments' sidecars name the right market even after a crash."""
LOCK_FILE = ".lock"
LOCK_POLL_S = 1.0


def backfill_collector_id(market: Market) -> str:
    """The collector id of ``market``'s healing runs: ``backfill`` on USDⓈ-M, ``backfill.spot`` ..."""
    return BACKFILL_COLLECTOR_ID if market is USDM else f"{BACKFILL_COLLECTOR_ID}.{market.name}"


@contextlib.contextmanager
def exclusive_healing(paths: DataPaths, market: Market = USDM) -> Iterator[None]:
    """Hold the lock of ``open/backfill/`` (``open/backfill.<market>/`` off USDⓈ-M; waiting while another run holds
    it), after sealing what a killed run left open there."""
    collector_id = backfill_collector_id(market)
    open_dir = paths.open_segments / collector_id
    open_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(open_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _lock(fd, open_dir)
        for recovered in recover_open_segments(open_dir, paths.sealed_segments, collector_id, market=market.name):
            log.warning("sealed %s, left open by an interrupted backfill run", recovered.name)
        yield
    finally:
        os.close(fd)  # releases the lock


def _lock(fd: int, open_dir: os.PathLike[str]) -> None:
    waiting = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if not waiting:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                log.info("waiting for the backfill run holding %s (pid %s) to finish", open_dir, holder)
                waiting = True
            time.sleep(LOCK_POLL_S)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


class HealSegment:
    """One run's segment: opened at the first line, sealed once at the end."""

    def __init__(self, paths: DataPaths, clock: Callable[[], int], market: Market = USDM):
        self.namer = SegmentNamer(backfill_collector_id(market))
        self.market = market
        self.conn_id = f"{self.namer.boot_id}-heal"
        """The connection id of the run's records."""
        self._open_dir = paths.open_segments / self.namer.collector_id
        self._sealed_root = paths.sealed_segments
        self._clock = clock
        self._segment: OpenSegment | None = None

    def append(self, lines: Sequence[Line]) -> None:
        """Write ``lines`` at the end of the segment (opened on the first call)."""
        if not lines:
            return
        if self._segment is None:
            opened = self._clock()
            name = self.namer.next_name(opened)
            collector_id = self.namer.collector_id
            self._segment = OpenSegment(self._open_dir, name, collector_id, opened, market=self.market.name)
        self._segment.append(lines)

    def seal(self) -> str | None:
        """Seal the segment (fsync, sidecar, atomic rename); its name, or None when nothing was written."""
        if self._segment is None:
            return None
        meta = self._segment.seal(self._sealed_root, self._clock())
        return meta.name if meta else None

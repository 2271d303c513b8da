"""The collector process: wires connections, watchdog, snapshots, writer and metrics, and runs until told to stop.

Start-up: take the lock on ``open/<collector_id>/`` (two collectors can never share an open directory), seal what a
crashed predecessor left open, then connect. Stop (SIGTERM/SIGINT): stop reading, drain the queue, seal, exit 0
within ``shutdown_deadline_s`` (exit 1 if the disk kept failing and records could not be written).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import itertools
import logging
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

from harvest_pipeline.atomic_write import write_json_atomically
from harvest_pipeline.collector.buffer import BoundedLineQueue, DropLedger
from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.intake import Intake
from harvest_pipeline.collector.metrics import CollectorMetrics, start_http
from harvest_pipeline.collector.shard import Shard
from harvest_pipeline.collector.snapshots import SnapshotFetcher
from harvest_pipeline.collector.watchdog import Watchdog
from harvest_pipeline.collector.writer import SegmentWriter
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import LOCAL_FS, FileSystem, Line, SegmentNamer, recover_open_segments

log = logging.getLogger(__name__)


class CollectorLocked(RuntimeError):
    """Another live collector holds this collector id's open directory."""


def load_file_system(spec: str | None) -> FileSystem:
    """The file-system layer named by ``module:factory`` (a test hook for fault injection), or the local one."""
    if not spec:
        return LOCAL_FS
    module_name, _, attr = spec.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    fs = factory()
    if not isinstance(fs, FileSystem):
        raise TypeError(f"fs_factory {spec!r} returned {type(fs).__name__}, not a FileSystem")
    return fs


def acquire_lock(open_dir: Path) -> int:
    """Lock ``open_dir`` for this process (released by the kernel even on kill -9); returns the lock descriptor."""
    open_dir.mkdir(parents=True, exist_ok=True)
    lock_path = open_dir / ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise CollectorLocked(
            f"another collector (pid {holder}) is using {open_dir}; stop it or give this one another --collector-id"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class CollectorService:
    """One collector: everything between the exchange and the sealed segments."""

    def __init__(
        self,
        config: CollectorConfig,
        paths: DataPaths,
        fs: FileSystem = LOCAL_FS,
        clock: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
    ):
        self.config = config
        self.paths = paths
        self.open_dir = paths.open_segments / config.collector_id
        self.metrics = CollectorMetrics()
        self.namer = SegmentNamer(config.collector_id)
        self.queue = BoundedLineQueue(config.queue_max_lines, config.queue_max_bytes)
        self.ledger = DropLedger()
        self.intake = Intake(config, self.queue, self.ledger, clock, self.metrics)
        self.writer = SegmentWriter(
            config, self.queue, self.ledger, self.namer, self.open_dir, paths.sealed_segments, fs, clock, self.metrics
        )
        self.metrics.watch(self.intake.streams, self.queue, self.ledger, clock)
        self._fs = fs
        self._rng = rng or random.Random()
        self._conn_numbers = itertools.count(1)
        self.shards = self._build_shards()
        self.metrics_port: int | None = None

    def _build_shards(self) -> list[Shard]:
        shards = []
        size = self.config.streams_per_connection
        for route, names in self.config.streams_by_route().items():
            for start in range(0, len(names), size):
                shard = Shard(
                    len(shards),
                    route,
                    names[start : start + size],
                    self.intake,
                    self.config,
                    self._new_conn_id,
                    self._rng,
                )
                shards.append(shard)
        return shards

    def _new_conn_id(self) -> str:
        return f"{self.namer.boot_id}-{next(self._conn_numbers)}"

    def health(self) -> tuple[bool, dict[str, object]]:
        """The /healthz report: per-stream state and the writer's."""
        now = self.intake.clock()
        watchdog_ns = int(self.config.watchdog_s * 1e9)
        streams = {name: state.health(now, watchdog_ns) for name, state in self.intake.streams.items()}
        writer = {
            "alive": self.writer.alive,
            "healthy": self.writer.healthy,
            "segment": self.writer.segment_name,
            "queue_lines": self.queue.depth,
            "queue_bytes": self.queue.bytes,
            "dropped": dict(self.ledger.total),
        }
        streams_ok = all(entry["state"] != "silent" for entry in streams.values())
        healthy = self.writer.alive and self.writer.healthy and streams_ok
        return healthy, {"status": "ok" if healthy else "degraded", "streams": streams, "writer": writer}

    def _recover(self) -> list[Line]:
        lines = []
        for meta in recover_open_segments(
            self.open_dir, self.paths.sealed_segments, self.config.collector_id, self._fs
        ):
            log.warning(
                "recovered open segment %s: %d records sealed, %d torn line(s) cut",
                meta.name,
                meta.lines,
                meta.torn_lines_cut,
            )
            lines.append(
                self.writer.control_line(
                    "recovered", segment=meta.name, lines=meta.lines, torn_lines_cut=meta.torn_lines_cut
                )
            )
        return lines

    async def run(self, stop: asyncio.Event) -> int:
        """Collect until ``stop`` is set; returns the process exit code."""
        lock_fd = acquire_lock(self.open_dir)
        try:
            self.writer.add_initial(self._recover())
            self.writer.start()
            runner, self.metrics_port = await start_http(
                self.config.metrics_host, self.config.metrics_port, self.metrics, self.health
            )
            fetcher = SnapshotFetcher(self.config, self.intake, f"{self.namer.boot_id}-rest", self._rng)
            self.intake.request_snapshot = fetcher.request
            shards_by_stream = {name: shard for shard in self.shards for name in shard.streams}
            watchdog = Watchdog(self.intake, shards_by_stream, self.config.watchdog_s)
            background = [asyncio.create_task(fetcher.run()), asyncio.create_task(watchdog.run())]
            for shard in self.shards:
                shard.start()
            self._write_ready_file()
            writer_died = await self._wait_for_stop_or_writer_death(stop)
            code = await self._shutdown(background, runner)
            return 1 if writer_died else code
        finally:
            os.close(lock_fd)

    async def _wait_for_stop_or_writer_death(self, stop: asyncio.Event) -> bool:
        """Wait for ``stop``; True if the writer thread died first (nothing could be written any more)."""
        while not stop.is_set():
            if not self.writer.alive:
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        return False

    async def _shutdown(self, background: list[asyncio.Task[None]], runner: object) -> int:
        deadline = time.monotonic() + self.config.shutdown_deadline_s
        log.info("stopping: closing connections, draining %d queued records", self.queue.depth)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await asyncio.gather(*(shard.stop() for shard in self.shards))
        await runner.cleanup()  # type: ignore[attr-defined]
        remaining = max(1.0, deadline - time.monotonic())
        ok = await asyncio.to_thread(self.writer.stop, remaining)
        log.info("collector stopped %s", "cleanly" if ok else "with unwritten records")
        return 0 if ok else 1

    def _write_ready_file(self) -> None:
        if not self.config.ready_file:
            return
        path = Path(self.config.ready_file)
        info = {
            "pid": os.getpid(),
            "collector_id": self.config.collector_id,
            "boot_id": self.namer.boot_id,
            "metrics_url": f"http://{self.config.metrics_host}:{self.metrics_port}",
        }
        write_json_atomically(path, info)


async def run_until_signalled(service: CollectorService) -> int:
    """Run ``service`` until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await service.run(stop)

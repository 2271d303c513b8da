"""The collector process: wires connections, watchdog, snapshots, writer and metrics, and runs until told to stop.

Start-up: take the lock on ``open/<collector_id>/`` (two collectors can never share an open directory; collectors of
different markets have different ids by default), seal what a crashed predecessor left open, then connect. One collector
records one market (``config.market``); a market without open interest (spot) runs no poller for it. Stop
(SIGTERM/SIGINT): stop reading, drain the queue, seal, exit 0 within ``shutdown_deadline_s`` (exit 1 if the disk kept
failing and records could not be written).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import importlib
import itertools
import logging
import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from harvest_pipeline.atomic_write import write_json_atomically
from harvest_pipeline.collector.backfill import TradeBackfiller
from harvest_pipeline.collector.book_sync import BookSync
from harvest_pipeline.collector.buffer import BoundedLineQueue, DropLedger, LossKey, StreamLoss
from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.down_time import DownTime
from harvest_pipeline.collector.intake import Intake
from harvest_pipeline.collector.metrics import CollectorMetrics, start_http
from harvest_pipeline.collector.open_interest import OpenInterestPoller
from harvest_pipeline.collector.recorded_symbols import RecordedSymbols, depth_streams
from harvest_pipeline.collector.rest_budget import WeightBudget
from harvest_pipeline.collector.shard import Shard
from harvest_pipeline.collector.shard_set import ShardSet
from harvest_pipeline.collector.shipper import SegmentShipper
from harvest_pipeline.collector.snapshots import SnapshotFetcher
from harvest_pipeline.collector.symbol_refresh import SymbolRefresher
from harvest_pipeline.collector.watchdog import Watchdog
from harvest_pipeline.collector.writer import SegmentWriter, WriterEvents
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import LOCAL_FS, FileSystem, Line, SegmentNamer

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
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:  # the pid is only a hint for the operator; a full disk must not stop the collector
        log.warning("cannot write the pid into %s: %s", lock_path, exc)
    return fd


DISK_CHECK_INTERVAL_S = 2.0
DROP_HEALTH_WINDOW_S = 5.0
"""/healthz stays non-200 this long after the last dropped record."""


class _BookEvents(WriterEvents):
    """Keeps the order-book sync state on what the writer actually wrote."""

    def __init__(self, book: BookSync):
        self.book = book
        self.request_snapshot: Callable[[str, str], None] = lambda symbol, reason: None
        self.request_backfill: Callable[[str, int, int, str], None] = lambda symbol, first, last, cause: None

    def losses_written(self, losses: dict[LossKey, StreamLoss]) -> None:
        for (stream, reason), loss in losses.items():
            symbol = self.book.symbol_of(stream)
            if symbol is not None:
                self.book.mark_unsynced(symbol, loss.last_recv_ns)
                self.request_snapshot(symbol, f"{loss.lines} book records lost")
            if loss.first_id is not None and loss.last_id is not None and stream.endswith("@aggTrade"):
                cause = f"{loss.lines} records lost ({reason})"
                self.request_backfill(stream.partition("@")[0].upper(), loss.first_id, loss.last_id, cause)

    def snapshots_written(self, lines: list[Line]) -> None:
        self.book.snapshots_written(lines)


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
        explicit = config.symbol_selection.explicit
        self.book = BookSync(depth_streams(config.streams_by_route(explicit)))
        self.intake = Intake(config, self.queue, self.ledger, clock, self.metrics, self.book)
        self._book_events = _BookEvents(self.book)
        self.writer = SegmentWriter(
            config,
            self.queue,
            self.ledger,
            self.namer,
            self.open_dir,
            paths.sealed_segments,
            fs,
            clock,
            self.metrics,
            self._book_events,
        )
        self.metrics.watch(self.intake.streams, self.queue, self.ledger, clock)
        self.disk_free: int | None = None
        self.disk_error: str | None = None
        self._fs = fs
        self._rng = rng or random.Random()
        self._conn_numbers = itertools.count(1)
        self.shard_set = ShardSet(self.intake, config, self._new_conn_id, self._rng)
        self.shard_set.lay_out(config.streams_by_route(explicit))
        self.recorded = RecordedSymbols(explicit, config, self.intake, self.book, self.shard_set, self.metrics)
        self.metrics_port: int | None = None
        self.open_interest: OpenInterestPoller | None = None
        self.refresher: SymbolRefresher | None = None
        self.down_time = DownTime(config, self.intake, self.open_dir, paths.sealed_segments, self.namer.boot_id)
        self.shipper = build_shipper(config, paths.sealed_segments, self._rng)
        if self.shipper is not None:
            self.metrics.watch_shipping(self.shipper.state)

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols recorded now: the explicit ones, plus what the selectors resolved to last."""
        return self.recorded.symbols

    @property
    def shards(self) -> list[Shard]:
        """The shards running now."""
        return self.shard_set.shards

    def _new_conn_id(self) -> str:
        return f"{self.namer.boot_id}-{next(self._conn_numbers)}"

    def health(self) -> tuple[bool, dict[str, object]]:
        """The /healthz report: healthy only when nothing is being lost or at risk; ``problems`` says why not."""
        now = self.intake.clock()
        watchdog_ns = int(self.config.watchdog_s * 1e9)
        streams = {name: state.health(now, watchdog_ns) for name, state in self.intake.streams.items()}
        problems = [f"stream {name} silent" for name, entry in streams.items() if entry["state"] == "silent"]
        problems += self._writer_problems()
        last_drop = self.ledger.last_drop_ns
        if last_drop is not None and now - last_drop < DROP_HEALTH_WINDOW_S * 1e9:
            problems.append(f"dropping records: the last was refused {(now - last_drop) / 1e9:.1f} s ago")
        if self.disk_error is not None:
            problems.append(self.disk_error)
        elif self.disk_free is not None and self.disk_free < self.config.disk_free_warn_bytes:
            guard_mb = self.config.disk_free_warn_bytes / 1e6
            problems.append(f"free disk {self.disk_free / 1e6:.1f} MB below the guard of {guard_mb:.1f} MB")
        symbols, symbol_problems = self._symbols_health()
        problems += symbol_problems
        unsynced = self.book.unsynced()
        for symbol, since in sorted(unsynced.items()):
            problems.append(f"{symbol} order book has no valid snapshot for {(now - since) / 1e9:.1f} s")
        writer = {
            "alive": self.writer.alive,
            "state": self.writer.state,
            "healthy": self.writer.healthy,
            "error": self.writer.last_error,
            "seal_error": self.writer.seal_error,
            "segment": self.writer.segment_name,
            "unsealed": self.writer.unsealed,
            "queue_lines": self.queue.depth,
            "queue_bytes": self.queue.bytes,
            "dropped": dict(self.ledger.total),
        }
        books = {symbol: symbol not in unsynced for symbol in sorted(self.book.symbols)}
        healthy = not problems
        report: dict[str, object] = {
            "status": "ok" if healthy else "degraded",
            "market": self.config.market,
            "problems": problems,
            "symbols": symbols,
            "streams": streams,
            "writer": writer,
            "books_synced": books,
            "disk_free_bytes": self.disk_free,
        }
        if self.open_interest is not None:
            report["open_interest"] = self.open_interest.health()
        if self.shipper is not None:
            shipping = self.shipper.state
            report["shipping"] = {"bucket": self.shipper.store.location.url, **shipping.to_json()}
            if shipping.last_error is not None:
                problems.append(
                    f"shipping to {self.shipper.store.location.url} failing ({shipping.backlog_segments} segments, "
                    f"{shipping.backlog_bytes / 1e6:.1f} MB waiting locally): {shipping.last_error}"
                )
                report["status"], healthy = "degraded", False
        return healthy, report

    def _symbols_health(self) -> tuple[dict[str, object], list[str]]:
        report: dict[str, object] = {"recorded": list(self.symbols)}
        if self.refresher is None:
            return report, []
        problem = self.refresher.problem()
        return {**report, **self.refresher.health()}, [problem] if problem else []

    def _writer_problems(self) -> list[str]:
        writer = self.writer
        if not writer.alive and writer.state not in ("starting", "stopped"):
            return [f"segment writer {writer.state}"]
        problems = []
        if not writer.healthy:
            problems.append(writer.last_error or "segment writer failing")
        if writer.seal_error is not None:
            problems.append(writer.seal_error)
        return problems

    async def run(self, stop: asyncio.Event) -> int:
        """Collect until ``stop`` is set; returns the process exit code."""
        lock_fd = acquire_lock(self.open_dir)
        try:
            loop = asyncio.get_running_loop()
            budget = WeightBudget(self.config.rest_weight_per_minute)
            if self.config.symbol_selection.has_selectors:  # before the resumption, which needs the first symbols
                self.refresher = SymbolRefresher(self.config, budget, self.metrics, self._rng, self.intake.clock)
                await self.refresher.refresh(self.recorded.change)
            self.down_time.declare_at_start(self.writer, self.refresher is not None and self.refresher.resolved is None)
            self.writer.start()
            self._check_disk()
            runner, self.metrics_port = await start_http(
                self.config.metrics_host, self.config.metrics_port, self.metrics, self.health
            )
            fetcher = SnapshotFetcher(self.config, self.intake, f"{self.namer.boot_id}-rest", self._rng, budget)
            self.intake.request_snapshot = fetcher.request

            def request_from_writer_thread(symbol: str, reason: str) -> None:
                loop.call_soon_threadsafe(fetcher.request, symbol, reason)

            self._book_events.request_snapshot = request_from_writer_thread
            self._follow_symbols(fetcher.add_symbols, fetcher.remove_symbols)
            background_tasks = [fetcher.run(), fetcher.refresh_periodically()]
            if self.config.backfill:
                backfiller = TradeBackfiller(
                    self.config, self.intake, f"{self.namer.boot_id}-backfill", self._rng, budget
                )
                self.intake.request_backfill = backfiller.request

                def backfill_from_writer_thread(symbol: str, first_id: int, last_id: int, cause: str) -> None:
                    loop.call_soon_threadsafe(backfiller.request, symbol, first_id, last_id, cause)

                self._book_events.request_backfill = backfill_from_writer_thread
                self.recorded.on_added.append(backfiller.add_symbols)  # holes found before are still filled
                background_tasks.append(backfiller.run())
            if self.config.open_interest_interval_s > 0 and self.config.exchange.has_open_interest:
                self.open_interest = OpenInterestPoller(
                    self.config, self.intake, f"{self.namer.boot_id}-open-interest", budget
                )
                self._follow_symbols(self.open_interest.add_symbols, self.open_interest.remove_symbols)
                background_tasks.append(self.open_interest.run())
            watchdog = Watchdog(self.intake, self.shard_set.by_stream, self.config.watchdog_s)
            if self.refresher is not None:
                self.recorded.on_added.append(self.down_time.declare_for_first_symbols)
                watchdog.on_fire = self._silent_selected_symbol
                background_tasks.append(self.refresher.run(self._apply_resolved))
            if self.shipper is not None:
                background_tasks.append(self.shipper.run(asyncio.Event()))  # stopped by cancellation at shutdown
            background = [
                *(asyncio.create_task(task) for task in background_tasks),
                asyncio.create_task(watchdog.run()),
                asyncio.create_task(self._watch_disk()),
            ]
            # Everything built so far (modules, config, the stream table) lives as long as the process: moved out of
            # the collected generations, a full collection scans only what the feed allocates, ~0.2 ms instead of
            # 15-25 ms of a stopped event loop (bench/backfill_latency.py).
            gc.freeze()
            self.shard_set.start()
            self._write_ready_file()
            writer_died = await self._wait_for_stop_or_writer_death(stop)
            code = await self._shutdown(background, runner)
            return 1 if writer_died else code
        finally:
            os.close(lock_fd)

    async def _apply_resolved(self, symbols: tuple[str, ...]) -> None:
        try:
            await self.recorded.change(symbols)
        finally:  # only the first resolution after a start without one declares a down time
            self.down_time.selectors_resolved()

    def _follow_symbols(self, add: Callable[[list[str]], None], remove: Callable[[list[str]], None]) -> None:
        """Hand a per-symbol part the symbols recorded now, and every later change."""
        add(list(self.symbols))
        self.recorded.on_added.append(add)
        self.recorded.on_removed.append(remove)

    def _silent_selected_symbol(self, stream: str) -> None:
        """A watchdog fired: a symbol a selector chose may have been delisted; ask the exchange early."""
        symbol = stream.partition("@")[0].upper()
        if self.refresher is not None and symbol not in self.config.symbol_selection.explicit:
            self.refresher.request_refresh(f"{stream} silent")

    def _check_disk(self) -> None:
        try:
            self.disk_free = shutil.disk_usage(self.open_dir).free
            self.disk_error = None
        except OSError as exc:
            self.disk_error = f"cannot read free disk space of {self.open_dir}: {exc}"
            return
        self.metrics.disk_free_bytes.set(self.disk_free)

    async def _watch_disk(self) -> None:
        """Refresh the free-disk figure on its own timer, whatever the writer is doing."""
        low = False
        while True:
            await asyncio.sleep(DISK_CHECK_INTERVAL_S)
            await asyncio.to_thread(self._check_disk)
            now_low = self.disk_free is not None and self.disk_free < self.config.disk_free_warn_bytes
            if now_low and not low:
                log.warning("low disk space under %s: %.1f MB free", self.open_dir, (self.disk_free or 0) / 1e6)
            low = now_low

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
        await self.shard_set.stop()
        await runner.cleanup()  # type: ignore[attr-defined]
        remaining = max(1.0, deadline - time.monotonic())
        ok = await asyncio.to_thread(self.writer.stop, remaining)
        if self.shipper is not None:
            await self.shipper.final_pass(max(1.0, deadline - time.monotonic()))
        log.info("collector stopped %s", "cleanly" if ok else "with unwritten records")
        return 0 if ok else 1

    def _write_ready_file(self) -> None:
        if not self.config.ready_file:
            return
        path = Path(self.config.ready_file)
        info = {
            "pid": os.getpid(),
            "collector_id": self.config.collector_id,
            "market": self.config.market,
            "boot_id": self.namer.boot_id,
            "metrics_url": f"http://{self.config.metrics_host}:{self.metrics_port}",
        }
        write_json_atomically(path, info)


def build_shipper(config: CollectorConfig, sealed_root: Path, rng: random.Random) -> SegmentShipper | None:
    """The shipper of this collector's sealed segments when the installation has a bucket."""
    if not config.object_store:
        return None
    from harvest_pipeline.objectstore import BucketLocation, ObjectStore, s3_filesystem  # pyarrow: only with a bucket

    store = ObjectStore(BucketLocation.from_url(config.object_store), s3_filesystem(config.s3_endpoint))
    return SegmentShipper(
        store, sealed_root, config.collector_id, config.ship_retry_initial_s, config.ship_retry_max_s, rng=rng
    )


async def run_until_signalled(service: CollectorService) -> int:
    """Run ``service`` until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await service.run(stop)

"""Prometheus metrics and /healthz, served on 127.0.0.1 by default.

Per-frame counters are plain attributes on ``StreamState`` (no lock, no label lookup on the hot path) and are read
by a custom collector at scrape time; rare events (reconnects, gaps, seals, write errors) use ordinary metric objects.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping

import psutil
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from harvest_pipeline.collector.buffer import BoundedLineQueue, DropLedger
from harvest_pipeline.collector.shipper import ShippingState
from harvest_pipeline.collector.streams import StreamState

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class CollectorMetrics:
    """Every metric the collector exports, on its own registry (so tests can build several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reconnects = Counter(
            "harvest_reconnects", "Connection ends that led to a reconnect", ["reason"], registry=r
        )
        self.gaps = Counter("harvest_gaps", "Exchange id sequence breaks detected", ["stream", "reason"], registry=r)
        self.watchdog_fires = Counter(
            "harvest_watchdog_fires", "Streams silent past the watchdog", ["stream"], registry=r
        )
        self.snapshots = Counter("harvest_depth_snapshots", "REST depth snapshot attempts", ["result"], registry=r)
        self.backfill_requests = Counter(
            "harvest_backfill_requests", "REST aggTrades requests of the trade backfill", ["result"], registry=r
        )
        self.backfill_trades = Counter("harvest_backfill_trades", "Trades stored by the REST backfill", registry=r)
        self.backfill_declared = Counter(
            "harvest_backfill_declared_ids", "Trade ids the backfill declared unfillable", registry=r
        )
        self.backfill_holes_pending = Gauge(
            "harvest_backfill_holes_pending", "Trade holes waiting for the REST backfill", registry=r
        )
        self.open_interest_polls = Counter(
            "harvest_open_interest_polls",
            "REST openInterest polls by outcome (ok, bad_body, error, http_<status>, skipped)",
            ["symbol", "outcome"],
            registry=r,
        )
        self.open_interest_last_ok = Gauge(
            "harvest_open_interest_last_ok_timestamp_seconds",
            "Receive time (Unix seconds) of the last open interest stored per symbol",
            ["symbol"],
            registry=r,
        )
        self.symbols_recorded = Gauge("harvest_symbols_recorded", "Symbols whose streams are subscribed", registry=r)
        self.symbol_changes = Counter(
            "harvest_symbol_changes", "Symbols added to or removed from the recording", ["change"], registry=r
        )
        self.symbol_refreshes = Counter(
            "harvest_symbol_refreshes", "Resolutions of the top:N / all selectors by outcome", ["outcome"], registry=r
        )
        self.write_errors = Counter("harvest_write_errors", "Failed disk operations (retried)", ["op"], registry=r)
        self.lines_written = Counter("harvest_lines_written", "Records appended to open segments", registry=r)
        self.segments_sealed = Counter("harvest_segments_sealed", "Segments sealed", registry=r)
        self.seal_seconds = Histogram(
            "harvest_seal_seconds", "Time to seal one segment", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.write_latency = Histogram(
            "harvest_recv_to_write_seconds",
            "Receive-to-written latency of the oldest record of each written batch (an upper bound per record)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.disk_free_bytes = Gauge("harvest_disk_free_bytes", "Free bytes on the segments file system", registry=r)
        self.writer_healthy = Gauge("harvest_writer_healthy", "1 while the last disk operation succeeded", registry=r)
        self.writer_healthy.set(1)
        self.segments_unsealed = Gauge(
            "harvest_segments_unsealed", "Segments whose seal failed and is being retried", registry=r
        )

    def watch(
        self, streams: Mapping[str, StreamState], queue: BoundedLineQueue, ledger: DropLedger, clock: Callable[[], int]
    ) -> None:
        """Export the live per-stream counters, queue and drop figures, and this process's RSS."""
        self.registry.register(_LiveCollector(streams, queue, ledger, clock))

    def watch_shipping(self, state: ShippingState) -> None:
        """Export the shipper's backlog, totals and failures."""
        self.registry.register(_ShippingCollector(state))


class _ShippingCollector(Collector):
    """The shipper's figures (``collector.shipper.ShippingState``), read at scrape time."""

    def __init__(self, state: ShippingState):
        self._state = state

    def collect(self) -> Iterable[Metric]:
        state = self._state
        yield GaugeMetricFamily(
            "harvest_ship_backlog_segments",
            "Sealed segments waiting locally to be shipped",
            value=state.backlog_segments,
        )
        yield GaugeMetricFamily("harvest_ship_backlog_bytes", "Bytes of those segments", value=state.backlog_bytes)
        yield CounterMetricFamily(
            "harvest_shipped_segments", "Segments shipped and verified", value=state.shipped_segments
        )
        yield CounterMetricFamily("harvest_shipped_bytes", "Bytes shipped and verified", value=state.shipped_bytes)
        yield CounterMetricFamily("harvest_ship_failures", "Failed shipping attempts (retried)", value=state.failures)
        if state.last_success_ns is not None:
            yield GaugeMetricFamily(
                "harvest_ship_last_success_timestamp_seconds",
                "When the last segment was shipped (Unix seconds)",
                value=state.last_success_ns / 1e9,
            )


class _LiveCollector(Collector):
    def __init__(
        self, streams: Mapping[str, StreamState], queue: BoundedLineQueue, ledger: DropLedger, clock: Callable[[], int]
    ):
        self._clock = clock
        self._streams = streams
        self._queue = queue
        self._ledger = ledger
        self._process = psutil.Process(os.getpid())

    def collect(self) -> Iterable[Metric]:
        frames = CounterMetricFamily("harvest_frames", "Frames received per stream", labels=["stream"])
        nbytes = CounterMetricFamily("harvest_frame_bytes", "Frame bytes received per stream", labels=["stream"])
        age = GaugeMetricFamily("harvest_last_frame_age_seconds", "Seconds since the last frame", labels=["stream"])
        watched = GaugeMetricFamily(
            "harvest_stream_watched",
            "1 if the watchdog watches the stream, 0 if its silence is normal",
            labels=["stream"],
        )
        dropped = CounterMetricFamily("harvest_dropped_lines", "Lines refused by the full queue", labels=["stream"])
        now_ns = self._clock()
        for name, state in list(self._streams.items()):
            frames.add_metric([name], state.frames)
            nbytes.add_metric([name], state.bytes)
            watched.add_metric([name], 0 if state.quiet else 1)
            if state.last_recv_ns is not None:
                age.add_metric([name], (now_ns - state.last_recv_ns) / 1e9)
        for name, count in list(self._ledger.total.items()):
            dropped.add_metric([name], count)
        yield from (frames, nbytes, age, watched, dropped)
        yield GaugeMetricFamily("harvest_queue_lines", "Lines waiting for the writer", value=self._queue.depth)
        yield GaugeMetricFamily("harvest_queue_bytes", "Bytes waiting for the writer", value=self._queue.bytes)
        yield GaugeMetricFamily("harvest_rss_bytes", "Resident set size", value=self._process.memory_info().rss)


async def start_http(
    host: str, port: int, metrics: CollectorMetrics, health: Callable[[], tuple[bool, dict[str, object]]]
) -> tuple[web.AppRunner, int]:
    """Serve ``/metrics`` and ``/healthz`` (200 when healthy, 503 otherwise); returns the runner and bound port."""

    async def metrics_handler(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health_handler(_: web.Request) -> web.Response:
        healthy, report = health()
        return web.json_response(report, status=200 if healthy else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", health_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    log.info("metrics on http://%s:%d/metrics, health on /healthz", host, bound)
    return runner, bound

"""Collector soak: RSS over a long run at 10x a busy market, and receive-to-written latency, in one run.

A pre-framed feed (``collector_feed``) paces frames at ``--rate`` (default 5,000 frames/s = 10x a busy market of
~500 frames/s: BTCUSDT aggTrade + bookTicker + depth@100ms in a volatile minute). The collector runs as its own
process; its RSS is sampled every few seconds. Baselines printed alongside: RSS in the first minute (flat means the
end matches it) and the 1 s flush requirement for latency.

Run from the repository root: ``python -m bench.collector_soak [--seconds 600] [--rate 5000]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from bench.collector_feed import SYMBOLS, Feed, binance_frames
from harvest_pipeline.segments import list_sealed_segments

BUSY_MARKET_FRAMES_PER_S = 500
KINDS = ("aggTrade", "bookTicker", "depth@100ms")


def start_collector(ws_base: str, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``harvest collect`` against the feed; returns the process and its metrics URL."""
    ready = root / "ready.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "HARVEST_SYMBOLS": ",".join(SYMBOLS),
        "HARVEST_STREAM_KINDS": ",".join(KINDS),
        "HARVEST_ROUTES": ",".join(f"{kind}=market" for kind in KINDS),
        "HARVEST_WS_BASE": ws_base,
        "HARVEST_REST_BASE": "http://127.0.0.1:9",
        "HARVEST_SNAPSHOT_RETRY_MAX_S": "600",
        "HARVEST_WATCHDOG_S": "600",
        "HARVEST_DATA_ROOT": str(root / "data"),
        "HARVEST_METRICS_PORT": "0",
        "HARVEST_READY_FILE": str(ready),
    }
    log = open(root / "collector.log", "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [sys.executable, "-m", "harvest_pipeline.cli", "--log-level", "WARNING", "collect"],
        env=env,
        stdout=log,
        stderr=log,
    )
    while not ready.exists():
        time.sleep(0.1)
    return process, json.loads(ready.read_text())["metrics_url"]


def latency_quantiles(metrics_text: str, quantiles: tuple[float, ...]) -> dict[float, str]:
    """Upper bucket bounds of the recv-to-written histogram at the given quantiles."""
    buckets = [
        (float(le), float(count))
        for le, count in re.findall(r'harvest_recv_to_write_seconds_bucket\{le="([^"]+)"\} (\S+)', metrics_text)
    ]
    total = buckets[-1][1]
    return {q: next(f"<= {le * 1e3:g} ms" for le, count in buckets if count >= q * total) for q in quantiles}


def main() -> None:
    """Run the soak and print RSS and latency figures with their baselines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=10 * BUSY_MARKET_FRAMES_PER_S)
    parser.add_argument("--sample-every", type=float, default=5.0)
    args = parser.parse_args()
    feed = Feed(binance_frames(50_000), rate=args.rate, repeat=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        collector, metrics_url = start_collector(feed.ws_base, root)
        process = psutil.Process(collector.pid)
        samples: list[tuple[float, int]] = []
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < args.seconds:
            samples.append((elapsed, process.memory_info().rss))
            time.sleep(args.sample_every)
        with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=10) as response:
            metrics_text = response.read().decode()
        collector.send_signal(signal.SIGTERM)
        exit_code = collector.wait(60)
        feed.stop()
        metas = [s.load_meta() for s in list_sealed_segments(root / "data" / "segments" / "sealed")]
        frames = sum(meta.kinds.get("frame", 0) for meta in metas)
        span_s = (max(m.last_recv_ns for m in metas) - min(m.first_recv_ns for m in metas)) / 1e9
    first = [rss for t, rss in samples if t < 60] or [samples[0][1]]
    last = [rss for t, rss in samples if t >= args.seconds - 60] or [samples[-1][1]]
    mib = 1024**2
    print(
        f"rate {args.rate:,.0f} frames/s ({args.rate / BUSY_MARKET_FRAMES_PER_S:.0f}x a busy market) "
        f"for {args.seconds:.0f} s; {frames:,} frames in {len(metas)} sealed segments "
        f"({frames / span_s:,.0f}/s over {span_s:.0f} s of receive time), exit code {exit_code}"
    )
    print(
        f"RSS first minute median {statistics.median(first) / mib:.1f} MiB (baseline), last minute median "
        f"{statistics.median(last) / mib:.1f} MiB, max {max(rss for _, rss in samples) / mib:.1f} MiB, "
        f"ratio last/first {statistics.median(last) / statistics.median(first):.3f} (goal: flat, ~1.0)"
    )
    quantiles = latency_quantiles(metrics_text, (0.5, 0.99))
    print(
        f"recv->written latency (oldest record of each write batch, an upper bound): p50 {quantiles[0.5]}, "
        f"p99 {quantiles[0.99]} (requirement: flushed within 1000 ms)"
    )


if __name__ == "__main__":
    main()

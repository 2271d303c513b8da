"""Benchmark: frames per second the simulator sustains to one client, next to a bare websockets send loop.

Both servers run in their own process; this process is the one client, counting frames for a fixed time. The baseline
server sends one pre-encoded bookTicker-sized frame in a tight loop (the most websockets can push to this client);
the simulator runs its market model at increasing rates with the client subscribed to every symbol's bookTicker and
depth diffs. Prints frames/s for each, the ratio to the baseline and the median delay from event time ``E`` to
receive. A rate counts as sustained when it delivers what it asks for (frames scale linearly with the rate).
Target: >= 20,000 frames/s sustained; the exit status is 1 below it.

    python bench/simulator.py [--seconds 4] [--rates 20,50,100,200,300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import orjson
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

REPO_ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = ("btcusdt", "ethusdt", "bnbusdt", "xrpusdt", "adausdt", "solusdt")
BASELINE_FRAME = (
    b'{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":1096725166,"E":1795706640748,"T":1795706640748,'
    b'"s":"BTCUSDT","b":"96999.90","B":"2.197","a":"97000.00","A":"1.233"}}'
)
TARGET_FRAMES_PER_S = 20_000
KEEP_UP_SHARE = 0.95
"""A run keeps up when it delivers this share of the frames its rate asks for (scaled from the lowest rate's run);
an overloaded simulator skips market ticks rather than sending stale frames, so fewer frames is the symptom."""


async def serve_baseline(ready_file: Path) -> None:
    """A bare websockets server that sends the same frame as fast as it can to whoever connects."""

    async def flood(ws) -> None:  # noqa: ANN001 - websockets connection
        try:
            while True:
                await ws.send(BASELINE_FRAME, text=True)
        except ConnectionClosed:
            return

    async with serve(flood, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        ready_file.write_text(f"ws://127.0.0.1:{port}")
        await asyncio.Future()


class Count(NamedTuple):
    """What one client saw: frames, seconds, whether it was dropped, and the median event-to-receive delay."""

    frames: int
    seconds: float
    dropped: bool
    median_delay_ms: float

    @property
    def per_second(self) -> float:
        """Frames per second."""
        return self.frames / self.seconds


async def count_frames(url: str, seconds: float) -> Count:
    """Count frames for ``seconds`` after the first one, sampling ``receive time - E`` every 256th frame."""
    delays: list[int] = []
    async with connect(url, compression=None, max_size=None, ping_interval=None) as ws:
        await ws.recv()
        frames, start = 0, time.perf_counter()
        deadline = start + seconds
        dropped = False
        try:
            while True:
                message = await ws.recv()
                frames += 1
                if frames % 256 == 0:
                    delays.append(time.time_ns() // 1_000_000 - orjson.loads(message)["data"]["E"])
                    if time.perf_counter() >= deadline:
                        break
        except ConnectionClosed:
            dropped = True
        elapsed = time.perf_counter() - start  # before the close handshake, which is not part of the throughput
    return Count(frames, elapsed, dropped, statistics.median(delays) if delays else 0.0)


def spawn(command: list[str], ready_file: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server process and wait for the URL it writes to ``ready_file``."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not ready_file.exists() or not ready_file.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server {command} did not start")
        time.sleep(0.05)
    text = ready_file.read_text()
    return process, orjson.loads(text)["ws_base"] if text.startswith("{") else text


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def measure_baseline(seconds: float, workdir: Path) -> float:
    """Frames/s of the bare websockets send loop to this client."""
    ready = workdir / "baseline.url"
    process, base = spawn([sys.executable, __file__, "--serve-baseline", str(ready)], ready)
    try:
        count = asyncio.run(count_frames(base, seconds))
    finally:
        stop(process)
    return count.per_second


def measure_simulator(rate: float, seconds: float, workdir: Path) -> Count:
    """What one client of the simulator sees at ``rate``."""
    ready = workdir / f"sim-{rate}.json"
    command = [sys.executable, "-m", "harvest_pipeline.cli", "--log-level", "WARNING", "simulate"]
    command += ["--rate", str(rate), "--send-queue", "100000", "--ready-file", str(ready)]
    process, base = spawn(command, ready)
    streams = "/".join(f"{symbol}@{kind}" for symbol in SYMBOLS for kind in ("bookTicker", "depth@100ms"))
    try:
        return asyncio.run(count_frames(f"{base}/public/stream?streams={streams}", seconds))
    finally:
        stop(process)


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rates", default="20,50,100,200,300")
    parser.add_argument("--serve-baseline", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        asyncio.run(serve_baseline(args.serve_baseline))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        baseline = measure_baseline(args.seconds, workdir)
        print(f"bare websockets send loop:      {baseline:10,.0f} frames/s (baseline)")
        best, frames_per_rate = 0.0, None
        for rate in sorted(float(rate) for rate in args.rates.split(",")):
            count = measure_simulator(rate, args.seconds, workdir)
            frames_per_rate = frames_per_rate or count.per_second / rate  # the lowest rate is the reference load
            keeps_up = not count.dropped and count.per_second >= KEEP_UP_SHARE * frames_per_rate * rate
            verdict = "sustained" if keeps_up else "overloaded (client dropped or market clock behind)"
            print(f"simulator rate {rate:5.0f} (6 symbols): {count.per_second:10,.0f} frames/s  "
                  f"{count.per_second / baseline:5.2f}x baseline  median E-to-receive {count.median_delay_ms:5.0f} ms  "
                  f"{verdict}")  # fmt: skip
            if keeps_up:
                best = max(best, count.per_second)
    print(f"sustained: {best:,.0f} frames/s = {best / baseline:.2f}x the bare send loop "
          f"(target >= {TARGET_FRAMES_PER_S:,})")  # fmt: skip
    return 0 if best >= TARGET_FRAMES_PER_S else 1


if __name__ == "__main__":
    sys.exit(main())

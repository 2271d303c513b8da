"""Collector throughput (frames/s into sealed segments) against a bare ``websockets`` receive loop, same run.

Both clients read the same pre-framed feed (``collector_feed``) as fast as it arrives; the baseline only receives,
the collector receives, timestamps, extracts ids, encodes, queues, writes, fsyncs and seals. Goal: ratio >= 0.9.

Run from the repository root: ``python -m bench.collector_throughput [--frames 200000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import orjson
import websockets

from bench.collector_feed import SYMBOLS, Feed, binance_frames
from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.service import CollectorService
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import list_sealed_segments

KINDS = ("aggTrade", "bookTicker", "depth@100ms")


class Rate(NamedTuple):
    """Frames per second of wall time and per second of this process's CPU time (less sensitive to a busy host)."""

    wall: float
    cpu: float


async def bare_receive(ws_base: str, frames: int) -> Rate:
    """Frames/s of a loop that only receives (the ceiling for any websocket client in this interpreter)."""
    async with websockets.connect(f"{ws_base}/market/stream", max_size=4 << 20, compression=None) as ws:
        await ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": ["x"], "id": 1}), text=True)
        await ws.recv()
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(frames):
            await ws.recv(decode=False)
        return Rate(frames / (time.perf_counter() - started), frames / (time.process_time() - cpu_started))


async def collector_receive(ws_base: str, frames: int, root: Path) -> Rate:
    """Frames/s from subscription until every frame is in a sealed segment."""
    config = CollectorConfig(
        symbols=SYMBOLS,
        stream_kinds=KINDS,
        routes=dict.fromkeys(KINDS, "market"),
        ws_base=ws_base,
        rest_base="http://127.0.0.1:9",
        snapshot_retry_max_s=600.0,
        metrics_port=0,
    )
    service = CollectorService(config, DataPaths.from_root(root))
    cpu_started = time.process_time()
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    while sum(state.frames for state in service.intake.streams.values()) < frames:
        await asyncio.sleep(0.02)
    stop.set()
    assert await task == 0
    finished, cpu = time.time_ns(), time.process_time() - cpu_started
    segments = list_sealed_segments(root / "segments" / "sealed")
    metas = [segment.load_meta() for segment in segments]
    assert sum(meta.kinds.get("frame", 0) for meta in metas) == frames, "every frame must be sealed"
    subscribed = min(meta.first_recv_ns for meta in metas if meta.first_recv_ns is not None)
    return Rate(frames / ((finished - subscribed) / 1e9), frames / cpu)


def main() -> None:
    """Print both rates per round and the median ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    frames = binance_frames(args.frames)
    size = sum(len(frame) for frame in frames) / len(frames)
    print(f"feed: {args.frames} frames, mean {size:.0f} bytes, {len(SYMBOLS)} symbols x {len(KINDS)} kinds")
    bare_rates: list[Rate] = []
    collector_rates: list[Rate] = []
    for round_no in range(1, args.rounds + 1):
        feed = Feed(frames)
        try:
            bare = asyncio.run(bare_receive(feed.ws_base, args.frames))
            with tempfile.TemporaryDirectory() as tmp:
                collected = asyncio.run(collector_receive(feed.ws_base, args.frames, Path(tmp)))
        finally:
            feed.stop()
        bare_rates.append(bare)
        collector_rates.append(collected)
        print(
            f"round {round_no}: bare websockets {bare.wall:,.0f} frames/s ({bare.cpu:,.0f} per CPU-s), "
            f"collector {collected.wall:,.0f} frames/s ({collected.cpu:,.0f} per CPU-s)"
        )
    for measure in ("wall", "cpu"):
        bare_median = statistics.median(getattr(rate, measure) for rate in bare_rates)
        collector_median = statistics.median(getattr(rate, measure) for rate in collector_rates)
        unit = "frames/s" if measure == "wall" else "frames per CPU-second"
        print(
            f"median {measure}: bare {bare_median:,.0f}, collector {collector_median:,.0f} {unit} into sealed "
            f"segments, ratio {collector_median / bare_median:.2f} (goal >= 0.90)"
        )


if __name__ == "__main__":
    main()

"""Replay: serve the raw frames recorded in segments again, with their original pacing or N times faster.

Frames (records of kind ``frame``) from all given segments are merged in receive-time order and published on the
stream they were recorded from, so each goes out on its route (``/market`` for aggTrade, ``/public`` for book streams)
to whoever subscribed, raw or wrapped like any live frame. Recorded depth snapshots and the replayed frames feed
``ReplayedMarket``, which REST answers from during a replay. Pacing starts ``START_GRACE_S`` after the first client
subscribes, so the parallel connections of a collector all receive the first frames.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from harvest_pipeline import segments
from harvest_pipeline.simulator.connections import Hub
from harvest_pipeline.simulator.replay_market import ReplayedMarket

log = logging.getLogger(__name__)

MIN_SLEEP_S = 0.001
START_GRACE_S = 0.5
_ID_KEYS = {"aggTrade": "a"}


class RecordedFrame(NamedTuple):
    """One frame to replay: its receive time, stream, exchange id, the unwrapped ``data`` and its bytes."""

    recv_ns: int
    stream: str
    frame_id: int
    data: Any
    payload: bytes


class RecordedSnapshot(NamedTuple):
    """A REST depth snapshot the recording collector fetched."""

    recv_ns: int
    symbol: str
    body: dict[str, Any]


def frame_of(record: dict[str, Any]) -> RecordedFrame:
    """The replayable frame in a ``frame`` record (a combined-stream wrapper is unwrapped to its ``data``)."""
    frame = record["f"]
    data = frame["data"] if isinstance(frame, dict) and "data" in frame and "stream" in frame else frame
    kind = record["s"].partition("@")[2]
    frame_id = data.get(_ID_KEYS.get(kind, "u"), 0) if isinstance(data, dict) else 0
    return RecordedFrame(record["t"], record["s"], int(frame_id or 0), data, orjson.dumps(data))


def recorded_items(path: Path) -> Iterator[RecordedFrame | RecordedSnapshot]:
    """Every frame and depth snapshot record of one segment, in file order (other kinds and bad lines are skipped)."""
    for _, record in segments.iter_records(path):
        if not isinstance(record, dict):
            continue
        if record["k"] == segments.KIND_FRAME:
            yield frame_of(record)
        elif record["k"] == segments.KIND_SNAPSHOT and isinstance(record.get("f"), dict) and "symbol" in record:
            yield RecordedSnapshot(record["t"], record["symbol"], record["f"])


class Replay:
    """Publishes recorded frames through the hub instead of the market model."""

    def __init__(self, paths: Sequence[Path], speed: float, hub: Hub, trade_history: int):
        missing = [str(path) for path in paths if not Path(path).is_file()]
        if missing:
            raise FileNotFoundError(f"cannot replay: segment files not found: {', '.join(missing)}")
        self.paths = [Path(path) for path in paths]
        self.speed = speed
        self.hub = hub
        self.market = ReplayedMarket(trade_history)
        self.frames_published = 0
        self.finished = asyncio.Event()

    async def run(self) -> None:
        """Wait for a subscriber (plus the grace), then publish each frame at its recorded offset / speed."""
        while not self.hub.has_subscribers():
            await asyncio.sleep(0.05)
        await asyncio.sleep(START_GRACE_S)
        loop = asyncio.get_running_loop()
        start, first_ns = loop.time(), None
        merged = heapq.merge(*(recorded_items(path) for path in self.paths), key=lambda item: item.recv_ns)
        for item in merged:
            if first_ns is None:
                first_ns = item.recv_ns
            delay = start + (item.recv_ns - first_ns) / 1e9 / self.speed - loop.time()
            if delay > MIN_SLEEP_S:
                await asyncio.sleep(delay)
            if isinstance(item, RecordedSnapshot):
                self.market.on_snapshot(item.symbol, item.body)
                continue
            self.market.on_frame(item.stream, item.data)
            self.hub.publish(item.stream, item.frame_id, item.payload, loop.time())
            self.frames_published += 1
        log.info("replay finished: %d frames from %d segments", self.frames_published, len(self.paths))
        self.finished.set()

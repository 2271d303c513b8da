"""Small real clients for simulator tests: websocket collectors and HTTP calls on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

TEST_TIMEOUT_S = 30.0


def run(scenario: Coroutine[Any, Any, Any]) -> Any:
    """Run one async test scenario with a hard timeout."""
    return asyncio.run(asyncio.wait_for(scenario, TEST_TIMEOUT_S))


async def collect(ws: ClientConnection, seconds: float) -> list[str]:
    """Every text frame received within ``seconds`` (stops early if the server closes)."""
    frames: list[str] = []
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        async with asyncio.timeout(seconds):
            async for message in ws:
                frames.append(message)
    return frames


def payloads(frames: list[str], stream: str | None = None) -> list[dict[str, Any]]:
    """The ``data`` objects of combined frames (of one stream if given), or the frames themselves when raw."""
    decoded = [orjson.loads(frame) for frame in frames]
    if decoded and "stream" in decoded[0]:
        return [item["data"] for item in decoded if stream is None or item["stream"] == stream]
    return decoded


async def http_get(url: str) -> tuple[int, dict[str, str], Any]:
    """Status, headers and decoded JSON body of a GET."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, dict(response.headers), orjson.loads(await response.read())


async def admin_fault(admin_base: str, fault: dict[str, Any]) -> tuple[int, Any]:
    """POST a fault to the admin API; returns status and decoded body."""
    async with aiohttp.ClientSession() as session, session.post(f"{admin_base}/admin/fault", json=fault) as response:
        return response.status, orjson.loads(await response.read())


async def collect_then_unsubscribe(ws: ClientConnection, seconds: float, streams: list[str]) -> list[str]:
    """Frames for ``seconds``, then everything up to the UNSUBSCRIBE reply: the reply is queued behind every frame
    the simulator already counted as sent, so the result is exactly what its accounting covers."""
    frames = await collect(ws, seconds)
    await ws.send(orjson.dumps({"method": "UNSUBSCRIBE", "params": streams, "id": 999}).decode())
    async for frame in ws:
        if frame == '{"result":null,"id":999}':
            break
        frames.append(frame)
    return frames


FROZEN_MARKET = {"fault": "burst", "seconds": 600, "multiplier": 0}
"""A market that runs no book events (the clock goes on): start with it, subscribe, then ``clear`` it, and the client
has seen every trade since start."""


def clock_offset_before(period_ms: int, lead_ms: int) -> int:
    """A ``clock_offset_ms`` that starts the exchange clock ``lead_ms`` before a multiple of ``period_ms`` (a minute,
    a funding time), so a test sees the boundary within seconds."""
    now_ms = time.time_ns() // 1_000_000
    boundary = (now_ms + lead_ms) // period_ms * period_ms + period_ms
    return boundary - lead_ms - now_ms

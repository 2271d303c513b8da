"""Edges of the input and of time: hostile frames, UTC midnight, a second collector on the same directory."""

import asyncio
import base64
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from websockets.asyncio.server import serve

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.service import CollectorLocked, CollectorService, acquire_lock
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import MAX_BAD_FRAME_BYTES, list_sealed_segments
from tests.collector.harness import FAST_SETTINGS, collect_in_process, records_of
from tests.collector.sealed import load_sealed_records
from tests.collector.test_hostile_frames import collect

MAX_FRAME = 64 * 1024


def test_segments_crossing_utc_midnight_go_to_new_date_folders(tmp_path):
    now = datetime.now(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    offset = int(midnight.timestamp() * 1e9) - 1_200_000_000 - time.time_ns()

    async def scenario(sim, service):
        await asyncio.sleep(2.5)

    records, _ = collect_in_process(tmp_path, scenario, clock=lambda: time.time_ns() + offset, segment_max_age_s=0.5)
    days = {segment.path.parent.name for segment in list_sealed_segments(tmp_path / "data" / "segments" / "sealed")}
    assert days == {f"date={midnight - timedelta(days=1):%Y-%m-%d}", f"date={midnight:%Y-%m-%d}"}
    midnight_ns = int(midnight.timestamp() * 1e9)
    frames = records_of(records, "frame")
    assert frames[0]["t"] < midnight_ns < frames[-1]["t"]


async def hostile_exchange(websocket):
    await websocket.recv()
    await websocket.send('{"result":null,"id":1}')
    good = b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","a":%d}}'
    await websocket.send(good % 1, text=True)
    await websocket.send(b'{"stream":"btcusdt@aggTrade","data":"\xff\xfe"}', text=True)
    await websocket.send(b'{"stream":"btcusdt@aggTrade","data":"binary"}', text=False)
    await websocket.send("this is not json")
    await websocket.send('{"stream":"btcusdt@aggTrade","data":{"text":"line\nbreak"}}')
    await websocket.send(good[:-1] % 2 + b" " * (MAX_FRAME - 200) + b"}", text=True)
    await websocket.send(b"x" * (MAX_FRAME + 1), text=True)
    await websocket.send(good % 3, text=True)
    await websocket.wait_closed()


def test_hostile_frames_are_recorded_safely_and_oversized_ones_are_set_aside_without_a_reconnect(tmp_path):
    records = collect(tmp_path, hostile_exchange, last_id=3, max_frame_bytes=MAX_FRAME)
    kinds = [(r["k"], r.get("reason")) for r in records if r["k"] in ("frame", "bad_frame")]
    assert kinds == [
        ("frame", None),
        ("bad_frame", "invalid UTF-8 at byte 37"),
        ("bad_frame", "binary websocket frame"),
        ("bad_frame", "frame is not a JSON object"),
        ("bad_frame", "frame contains a line break"),
        ("frame", None),
        ("bad_frame", f"frame of {MAX_FRAME + 1} bytes exceeds max_frame_bytes {MAX_FRAME}"),
        ("frame", None),
    ]
    oversized = records_of(records, "bad_frame")[-1]
    assert oversized["raw_len"] == MAX_FRAME + 1 and len(base64.b64decode(oversized["raw_b64"])) == MAX_BAD_FRAME_BYTES
    assert len(records_of(records, "connect")) == 1, "the oversized frame did not cost the connection"
    assert [r["reason"] for r in records_of(records, "disconnect")] == ["shutdown"]


def test_two_collectors_cannot_share_an_open_directory(tmp_path):
    open_dir = tmp_path / "open" / "c1"
    held = acquire_lock(open_dir)
    with pytest.raises(CollectorLocked, match="another collector"):
        acquire_lock(open_dir)

    os.close(held)
    os.close(acquire_lock(open_dir))


def test_websocket_429_is_honoured_with_its_retry_after(tmp_path):
    attempts: list[float] = []

    def reject_first(connection, request):
        attempts.append(time.monotonic())
        if len(attempts) > 1:
            return None
        response = connection.respond(429, "slow down\n")
        response.headers["Retry-After"] = "1"
        return response

    async def main():
        async with serve(hostile_exchange, "127.0.0.1", 0, process_request=reject_first) as server:
            server_port = server.sockets[0].getsockname()[1]
            config = CollectorConfig(
                ws_base=f"ws://127.0.0.1:{server_port}",
                rest_base="http://127.0.0.1:9",
                stream_kinds=("aggTrade",),
                **FAST_SETTINGS,
            )
            stop = asyncio.Event()
            task = asyncio.create_task(CollectorService(config, DataPaths.from_root(tmp_path)).run(stop))
            await asyncio.sleep(1.6)
            stop.set()
            assert await task == 0

    asyncio.run(main())
    assert len(attempts) >= 2 and attempts[1] - attempts[0] >= 1.0, "waited Retry-After, not the 0.05 s backoff"
    records = load_sealed_records(tmp_path / "segments" / "sealed")
    assert records_of(records, "disconnect")[0]["reason"] == "connect failed: HTTP 429"

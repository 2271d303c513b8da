"""Replay: recorded frames come back byte-equivalent, on their own routes, with their pacing scaled by the speed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from websockets.asyncio.client import connect

from harvest_pipeline import segments
from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from harvest_pipeline.simulator.replay import START_GRACE_S
from tests.simulator.ws_clients import collect, http_get, run

START_NS = 1_780_000_000_000_000_000
STEP_NS = 100_000_000  # 100 ms apart as recorded


def recorded_frames() -> list[tuple[str, bytes]]:
    """A combined aggTrade frame and a raw depth diff frame, alternating, as a collector would have received them."""
    frames = []
    for n in range(10):
        trade = {"e": "aggTrade", "E": 1 + n, "a": 500 + n, "s": "BTCUSDT", "p": "97000.10", "q": "0.001",
                 "f": 9, "l": 9, "T": 1 + n, "m": n % 2 == 0}  # fmt: skip
        frames.append(("btcusdt@aggTrade", orjson.dumps({"stream": "btcusdt@aggTrade", "data": trade})))
        diff = {"e": "depthUpdate", "E": 1 + n, "T": 1 + n, "s": "BTCUSDT", "U": 70 + n, "u": 70 + n, "pu": 69 + n,
                "b": [["97000.00", "1.000"]], "a": []}  # fmt: skip
        frames.append(("btcusdt@depth@100ms", orjson.dumps(diff)))
    return frames


def write_segment(tmp_path: Path) -> Path:
    open_dir, sealed_root = tmp_path / "open", tmp_path / "sealed"
    open_dir.mkdir()
    name = segments.segment_name(START_NS, "test", "boot", 1)
    segment = segments.OpenSegment(open_dir, name, "test", START_NS)
    lines = [
        segments.encode_frame(START_NS + i * STEP_NS // 2, "c1" if "agg" in stream else "c2", i, stream, raw)
        for i, (stream, raw) in enumerate(recorded_frames())
    ]
    lines.insert(3, segments.encode_control(START_NS, "c1", 99, "connect", url="ws://x"))
    snapshot = {"lastUpdateId": 70, "E": 1, "T": 1, "bids": [["96999.90", "2.000"]], "asks": [["97000.10", "1.000"]]}
    lines.insert(0, segments.encode_snapshot(START_NS, "rest", 0, "BTCUSDT", orjson.dumps(snapshot), limit=1000))
    segment.append(lines)
    segment.seal(sealed_root)
    return segments.sealed_path(sealed_root, name)


def test_replay_serves_recorded_frames_on_their_routes_with_scaled_pacing(tmp_path: Path) -> None:
    path = write_segment(tmp_path)
    expected = recorded_frames()

    async def scenario() -> None:
        config = SimulatorConfig(symbols=("BTCUSDT",), replay=(path,), replay_speed=2.0)
        async with (
            running_simulator(config) as sim,
            connect(f"{sim.ws_base}/market/ws/btcusdt@aggTrade") as market,
            connect(f"{sim.ws_base}/public/stream?streams=btcusdt@depth@100ms/btcusdt@aggTrade") as public,
        ):
            loop = asyncio.get_running_loop()
            started = loop.time()

            async def replay_duration() -> float:
                await sim.replay.finished.wait()
                return loop.time() - started

            trades, diffs, took = await asyncio.gather(collect(market, 2.0), collect(public, 2.0), replay_duration())
            _, _, depth = await http_get(f"{sim.rest_base}/fapi/v1/depth?symbol=BTCUSDT&limit=5")
            _, _, recent = await http_get(f"{sim.rest_base}/fapi/v1/aggTrades?symbol=BTCUSDT&fromId=508")
            tally = sim.accounting()["streams"]
        assert [orjson.loads(frame) for frame in trades] == [
            orjson.loads(raw)["data"] for stream, raw in expected if stream == "btcusdt@aggTrade"
        ]
        assert [orjson.loads(frame) for frame in diffs] == [
            {"stream": stream, "data": orjson.loads(raw)} for stream, raw in expected if stream != "btcusdt@aggTrade"
        ], "the aggTrade subscription on /public stays silent"
        assert 0.45 <= took - START_GRACE_S <= 1.0, "19 gaps of 50 ms at speed 2 take about 0.475 s"
        assert tally["btcusdt@aggTrade"]["first_id"] == 500 and tally["btcusdt@aggTrade"]["last_id"] == 509
        assert tally["btcusdt@depth@100ms"]["frames"] == 10
        assert depth["lastUpdateId"] == 79, "REST serves the recorded snapshot brought forward by the replayed diffs"
        assert depth["bids"] == [["97000.00", "1.000"], ["96999.90", "2.000"]] and depth["asks"] == [
            ["97000.10", "1.000"]
        ]
        assert [trade["a"] for trade in recent] == [508, 509] and list(recent[0]) == ["a", "p", "q", "f", "l", "T", "m"]

    run(scenario())

"""Publish latency: ``E - T`` (matching to publishing) has the configured median and tail, never goes negative, ``E``
never decreases along a stream, no frame arrives before its ``E``, and 0 restores ``E == T``."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from harvest_pipeline.simulator.latency import LatencySetting, PublishLatency, parse_latency
from tests.simulator.ws_clients import FROZEN_MARKET, collect, collect_then_unsubscribe, payloads, run

SYMBOLS = ("btcusdt", "ethusdt", "solusdt", "xrpusdt")
TIMED_KINDS = {"market": ("aggTrade", "trade"), "public": ("bookTicker", "depth@100ms", "depth20@100ms")}
"""The futures streams whose events carry a matching time ``T`` besides ``E``, by route."""


def streams_of(symbols: tuple[str, ...], route: str) -> list[str]:
    return [f"{symbol}@{kind}" for symbol in symbols for kind in TIMED_KINDS[route]]


def p99(values: list[int]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


async def collect_received(ws: ClientConnection, seconds: float, streams: list[str]) -> list[tuple[int, str]]:
    """Every frame with the wall-clock ms it arrived at, up to the reply of an UNSUBSCRIBE sent after ``seconds``."""
    received: list[tuple[int, str]] = []
    unsubscribe_at: float | None = time.monotonic() + seconds
    async for message in ws:
        received_ms = time.time_ns() // 1_000_000
        if message == '{"result":null,"id":999}':
            break
        received.append((received_ms, str(message)))
        if unsubscribe_at is not None and time.monotonic() >= unsubscribe_at:
            await ws.send(orjson.dumps({"method": "UNSUBSCRIBE", "params": streams, "id": 999}).decode())
            unsubscribe_at = None
    return received


def test_default_latency_has_its_median_and_tail_never_goes_back_and_no_frame_arrives_before_its_e() -> None:
    async def scenario() -> tuple[list[tuple[int, str]], dict[str, Any]]:
        config = SimulatorConfig(symbols=tuple(s.upper() for s in SYMBOLS), seed=5, rate=10.0)
        market, public = streams_of(SYMBOLS, "market"), streams_of(SYMBOLS, "public")
        async with (
            running_simulator(config) as sim,
            connect(f"{sim.ws_base}/market/stream?streams={'/'.join(market)}", max_size=None) as market_ws,
            connect(f"{sim.ws_base}/public/stream?streams={'/'.join(public)}", max_size=None) as public_ws,
        ):
            received = await asyncio.gather(
                collect_received(market_ws, 3.0, market), collect_received(public_ws, 3.0, public)
            )
            return [*received[0], *received[1]], sim.accounting()

    received, accounting = run(scenario())
    decoded = [(recv_ms, orjson.loads(frame)) for recv_ms, frame in received]
    assert all(recv_ms >= item["data"]["E"] for recv_ms, item in decoded), "a frame arrived before its event time"
    batches: dict[tuple[str, int], int] = {}
    for stream in streams_of(SYMBOLS, "market") + streams_of(SYMBOLS, "public"):
        events = [item["data"] for _, item in decoded if item["stream"] == stream]
        assert len(events) > 20, stream
        assert all(event["E"] >= event["T"] for event in events), f"{stream}: published before it was matched"
        times = [event["E"] for event in events]
        assert times == sorted(times), f"{stream}: E went back"
        batches.update(((stream, event["T"]), event["E"] - event["T"]) for event in events)
        assert accounting["streams"][stream]["frames"] == len(events), f"{stream}: the accounting counts what arrived"
    agg_latencies = [
        item["data"]["E"] - item["data"]["T"] for _, item in decoded if item["stream"].endswith("@aggTrade")
    ]
    by_batch = list(batches.values())
    assert len(agg_latencies) > 2_000 and len(by_batch) > 3_000
    assert statistics.median(agg_latencies) == 2 and 8 <= p99(agg_latencies) <= 25
    assert statistics.median(by_batch) == 2 and 11 <= p99(by_batch) <= 20
    assert statistics.mean(latency == 0 for latency in by_batch) < 0.15, "most messages wait a little"


def test_zero_latency_gives_e_equal_to_t_everywhere() -> None:
    async def scenario() -> list[str]:
        config = SimulatorConfig(symbols=("BTCUSDT",), seed=5, rate=5.0, publish_latency_ms=0)
        market, public = "/".join(streams_of(("btcusdt",), "market")), "/".join(streams_of(("btcusdt",), "public"))
        async with (
            running_simulator(config) as sim,
            connect(f"{sim.ws_base}/market/stream?streams={market}") as market_ws,
            connect(f"{sim.ws_base}/public/stream?streams={public}") as public_ws,
        ):
            received = await asyncio.gather(collect(market_ws, 1.0), collect(public_ws, 1.0))
            return [*received[0], *received[1]]

    frames = run(scenario())
    for stream in streams_of(("btcusdt",), "market") + streams_of(("btcusdt",), "public"):
        events = payloads(frames, stream)
        assert len(events) > 5 and all(event["E"] == event["T"] for event in events), stream


def test_spot_keeps_its_layouts_with_the_later_event_time() -> None:
    async def scenario() -> list[str]:
        config = SimulatorConfig(market="spot", symbols=("BTCUSDT",), seed=5, rate=5.0)
        streams = "btcusdt@aggTrade/btcusdt@trade/btcusdt@depth@100ms/btcusdt@bookTicker"
        async with running_simulator(config) as sim, connect(f"{sim.ws_base}/stream?streams={streams}") as ws:
            return await collect(ws, 1.0)

    frames = run(scenario())
    for stream in ("btcusdt@aggTrade", "btcusdt@trade"):
        events = payloads(frames, stream)
        assert len(events) > 5 and all(event["E"] >= event["T"] for event in events), stream
        assert any(event["E"] > event["T"] for event in events), stream
    diffs = payloads(frames, "btcusdt@depth@100ms")
    assert diffs and all(list(diff) == ["e", "E", "s", "U", "u", "b", "a"] for diff in diffs)
    assert [diff["E"] for diff in diffs] == sorted(diff["E"] for diff in diffs)
    assert all("E" not in ticker for ticker in payloads(frames, "btcusdt@bookTicker"))


def test_the_latency_leaves_the_seeded_trades_unchanged() -> None:
    async def trades(publish_latency_ms: LatencySetting) -> list[tuple[str, str, bool]]:
        config = SimulatorConfig(
            symbols=("BTCUSDT",), seed=9, rate=3.0, faults=(FROZEN_MARKET,), publish_latency_ms=publish_latency_ms
        )
        async with running_simulator(config) as sim, connect(f"{sim.ws_base}/market/ws/btcusdt@aggTrade") as ws:
            await collect(ws, 0.1)
            await sim.apply_fault({"fault": "clear"})
            frames = await collect_then_unsubscribe(ws, 1.0, ["btcusdt@aggTrade"])
        return [(trade["p"], trade["q"], trade["m"]) for trade in payloads(frames)]

    async def scenario() -> tuple[list[tuple[str, str, bool]], list[tuple[str, str, bool]]]:
        return await trades(0), await trades((4.0, 40.0))

    without, with_latency = run(scenario())
    common = min(len(without), len(with_latency))
    assert common > 50 and without[:common] == with_latency[:common]


def test_the_model_has_its_quantiles_rare_bursts_and_a_non_decreasing_e_per_stream() -> None:
    latency = PublishLatency((2.0, 15.0), seed=1, start_ms=0)
    draws = [latency.draw_ms(tick * 10) for tick in range(200_000)]  # 2,000 s of 10 ms ticks
    assert min(draws) >= 0 and statistics.median(draws) == 2 and 14 <= p99(draws) <= 17
    assert max(draws) > 4 * 15, "bursts reach far beyond the p99"
    events = [latency.event_ms("s", tick * 10, draw) for tick, draw in enumerate(draws)]
    assert events == sorted(events) and all(
        event >= tick * 10 + draw for tick, (event, draw) in enumerate(zip(events, draws, strict=True))
    )
    again = PublishLatency((2.0, 15.0), seed=1, start_ms=0)
    assert [again.draw_ms(tick * 10) for tick in range(1_000)] == draws[:1_000], "seeded"
    other = PublishLatency((2.0, 15.0), seed=2, start_ms=0)
    assert [other.draw_ms(tick * 10) for tick in range(1_000)] != draws[:1_000]


def test_zero_is_no_latency_and_settings_are_checked() -> None:
    latency = PublishLatency(0, seed=1, start_ms=0)
    assert [latency.event_ms("a", t, latency.draw_ms(t)) for t in (5, 3, 9)] == [5, 3, 9], "E is T, nothing more"
    assert parse_latency("2") == 2.0 and parse_latency("2,15") == (2.0, 15.0) and parse_latency("0") == 0.0
    for text, message in (("x", "is not 'median'"), ("1,2,3", "is not 'median'"), ("5,3", "p99 must be above")):
        with pytest.raises(ValueError, match=message):
            parse_latency(text)
    with pytest.raises(ValueError, match="median must be a finite number"):
        SimulatorConfig(publish_latency_ms=-1)

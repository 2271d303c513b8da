"""``<sym>@markPrice@1s`` and ``<sym>@markPrice`` over a real socket, across a funding time of the exchange clock, and
``GET /fapi/v1/premiumIndex`` answering from the same model."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from typing import Any

from websockets.asyncio.client import connect

from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from tests.simulator.ws_clients import clock_offset_before, collect, http_get, payloads, run

FUNDING_MS = 8 * 3_600_000
E8 = re.compile(r"^\d+\.\d{8}$")
RATE = re.compile(r"^-?0\.\d{8}$")
STREAMS = ["btcusdt@markPrice@1s", "btcusdt@markPrice", "xrpusdt@markPrice@1s"]


def test_mark_price_frames_every_second_and_every_third_with_the_next_funding_time_and_a_consistent_rate() -> None:
    async def scenario() -> tuple[list[str], dict[str, Any], list[dict[str, Any]]]:
        config = SimulatorConfig(
            symbols=("BTCUSDT", "XRPUSDT"), seed=2, clock_offset_ms=clock_offset_before(FUNDING_MS, lead_ms=1_500)
        )
        async with (
            running_simulator(config) as sim,
            connect(f"{sim.ws_base}/market/stream?streams={'/'.join(STREAMS)}") as ws,
        ):
            frames = await collect(ws, 3.3)
            _, _, single = await http_get(f"{sim.rest_base}/fapi/v1/premiumIndex?symbol=BTCUSDT")
            _, _, listed = await http_get(f"{sim.rest_base}/fapi/v1/premiumIndex")
            frames += await collect(ws, 1.2)
        return frames, single, listed

    frames, single, listed = run(scenario())
    fast, slow = payloads(frames, STREAMS[0]), payloads(frames, STREAMS[1])
    assert len(fast) >= 3 and len(slow) >= 1 and len(payloads(frames, STREAMS[2])) == len(fast)
    for frame in payloads(frames):
        assert list(frame) == ["e", "E", "s", "p", "i", "P", "r", "T"] and frame["e"] == "markPriceUpdate"
        assert all(E8.match(frame[key]) for key in "piP") and RATE.match(frame["r"])
        assert frame["E"] < frame["T"] <= frame["E"] + FUNDING_MS and frame["T"] % FUNDING_MS == 0
        mark, index = Decimal(frame["p"]), Decimal(frame["i"])
        expected_rate = (mark - index) / index / 3 + Decimal("0.0001")
        assert abs(Decimal(frame["r"]) - expected_rate) <= Decimal("0.00000001")
        assert abs(mark - index) < index * Decimal("0.005") and abs(Decimal(frame["P"]) - index) < index / 200
    assert len({frame["T"] for frame in fast}) == 2, "the funding time passed during the test"
    seconds = [frame["E"] // 1000 for frame in fast]
    assert seconds == sorted(set(seconds)), "one frame per second of the exchange clock"
    assert all(frame["E"] % 1000 < 500 for frame in fast), "sent at the start of each second"
    by_time = {frame["E"]: frame for frame in fast}
    for frame in slow:
        assert frame["E"] // 1000 % 3 == 0 and frame == by_time[frame["E"]], "the 3 s stream repeats the 1 s values"
    assert any(Decimal(frame["i"]) % Decimal("0.1") for frame in fast), "index prices are not bound to the tick"

    published = by_time[single["time"]]
    assert single == {
        "symbol": "BTCUSDT",
        "markPrice": published["p"],
        "indexPrice": published["i"],
        "estimatedSettlePrice": published["P"],
        "lastFundingRate": published["r"],
        "interestRate": "0.00010000",
        "nextFundingTime": published["T"],
        "time": published["E"],
    }
    assert [row["symbol"] for row in listed] == ["BTCUSDT", "XRPUSDT"] and listed[0]["time"] >= single["time"]


def test_premium_index_of_an_unknown_symbol_is_refused() -> None:
    async def scenario() -> tuple[int, Any]:
        async with running_simulator(SimulatorConfig(symbols=("BTCUSDT",))) as sim:
            await asyncio.sleep(0)
            status, _, body = await http_get(f"{sim.rest_base}/fapi/v1/premiumIndex?symbol=NOPEUSDT")
            return status, body

    assert run(scenario()) == (400, {"code": -1121, "msg": "Invalid symbol."})

"""Every fault mode, driven through the admin HTTP API or ``apply_fault``, observed by real clients."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from websockets.asyncio.client import connect

from harvest_pipeline.simulator import FaultError, SimulatorConfig, running_simulator
from tests.simulator.ws_clients import admin_fault, collect, collect_then_unsubscribe, http_get, payloads, run

CONFIG = SimulatorConfig(symbols=("BTCUSDT", "ETHUSDT"), seed=9, rate=3.0)
AGG = "btcusdt@aggTrade"


def test_unknown_fault_or_bad_params_answer_400_with_a_message() -> None:
    async def scenario() -> None:
        async with running_simulator(CONFIG) as sim:
            unknown = await admin_fault(sim.admin_base, {"fault": "explode"})
            missing = await admin_fault(sim.admin_base, {"fault": "stall_stream", "stream": AGG})
            wrong_type = await admin_fault(sim.admin_base, {"fault": "repeat", "stream": AGG, "count": "3"})
            no_conn = await admin_fault(sim.admin_base, {"fault": "drop_connection", "connection": "c99"})
            with pytest.raises(FaultError, match="needs parameter 'seconds'"):
                await sim.apply_fault({"fault": "burst", "multiplier": 2})
        assert unknown[0] == 400 and "unknown fault 'explode'" in unknown[1]["error"]
        assert missing[0] == 400 and "'seconds'" in missing[1]["error"]
        assert wrong_type[0] == 400 and "'count' must be int" in wrong_type[1]["error"]
        assert no_conn[0] == 400 and "c99" in no_conn[1]["error"]

    run(scenario())


def test_drop_all_and_drop_connection_cut_clients_and_record_why() -> None:
    async def scenario() -> None:
        async with running_simulator(CONFIG) as sim:
            async with connect(f"{sim.ws_base}/market/ws/{AGG}") as first, connect(f"{sim.ws_base}/market/ws/{AGG}"):
                await first.recv()
                assert await admin_fault(sim.admin_base, {"fault": "drop_connection", "connection": "c1"}) == (
                    200,
                    {"ok": True, "fault": "drop_connection"},
                )
                await collect(first, 2.0)
                assert first.state.name == "CLOSED"
                _, _, listed = await http_get(f"{sim.admin_base}/admin/connections")
                assert [(conn["id"], conn["route"], conn["streams"]) for conn in listed] == [("c2", "market", [AGG])]
                status, body = await admin_fault(sim.admin_base, {"fault": "drop_all"})
                assert status == 200 and body["dropped"] == ["c2"]
                await asyncio.sleep(0.2)
            connections = sim.accounting()["connections"]
        assert connections["c1"]["close_reason"] == "fault drop_connection"
        assert connections["c2"]["close_reason"] == "fault drop_all"
        assert connections["c1"]["closed_ms"] is not None

    run(scenario())


def test_stall_connection_stops_data_but_pings_keep_it_alive() -> None:
    async def scenario() -> None:
        config = SimulatorConfig(symbols=("BTCUSDT",), rate=3.0, ping_interval_s=0.1, ping_timeout_s=0.3)
        async with running_simulator(config) as sim, connect(f"{sim.ws_base}/market/ws/{AGG}") as ws:
            await ws.recv()
            await sim.apply_fault({"fault": "stall_connection", "connection": "c1", "seconds": 0.8})
            await asyncio.sleep(0.05)  # frames queued before the stall may still arrive
            await collect(ws, 0.05)
            during = await collect(ws, 0.6)
            after = await collect(ws, 0.5)
            assert ws.state.name == "OPEN"
        assert during == [] and len(after) > 5

    run(scenario())


def test_stall_stream_silences_one_stream_and_not_the_others() -> None:
    async def scenario() -> None:
        async with (
            running_simulator(CONFIG) as sim,
            connect(f"{sim.ws_base}/market/stream?streams={AGG}/ethusdt@aggTrade") as ws,
        ):
            await sim.apply_fault({"fault": "stall_stream", "stream": AGG, "seconds": 5})
            frames = await collect(ws, 0.6)
        streams = {orjson.loads(frame)["stream"] for frame in frames}
        assert streams == {"ethusdt@aggTrade"}

    run(scenario())


@pytest.mark.parametrize("kind", ["malformed", "truncated"])
def test_malformed_and_truncated_frames_are_injected_and_counted(kind: str) -> None:
    async def scenario() -> None:
        async with running_simulator(CONFIG) as sim, connect(f"{sim.ws_base}/market/stream?streams={AGG}") as ws:
            await admin_fault(sim.admin_base, {"fault": kind, "stream": AGG, "count": 3})
            frames = await collect_then_unsubscribe(ws, 0.6, [AGG])
            tally = sim.accounting()["connections"]["c1"]["streams"][AGG]
        bad = []
        good = []
        for frame in frames:
            try:
                good.append(orjson.loads(frame)["data"]["a"])
            except orjson.JSONDecodeError:
                bad.append(frame)
        assert len(bad) == 3 == tally["malformed"]
        assert good == list(range(good[0], good[0] + len(good))), "bad frames come in addition to the data"
        assert len(good) == tally["frames"]

    run(scenario())


def test_skip_agg_ids_makes_a_real_gap() -> None:
    async def scenario() -> None:
        async with running_simulator(CONFIG) as sim, connect(f"{sim.ws_base}/market/ws/{AGG}") as ws:
            ids = [orjson.loads(await ws.recv())["a"]]
            await sim.apply_fault({"fault": "skip_agg_ids", "symbol": "btcusdt", "count": 5})
            ids += [trade["a"] for trade in payloads(await collect(ws, 0.5))]
        steps = [b - a for a, b in zip(ids, ids[1:], strict=False)]
        assert steps.count(6) == 1 and set(steps) == {1, 6}

    run(scenario())


def test_break_pu_sends_a_diff_whose_pu_misses_the_previous_u() -> None:
    async def scenario() -> None:
        async with running_simulator(CONFIG) as sim, connect(f"{sim.ws_base}/public/ws/btcusdt@depth@100ms") as ws:
            diffs = [orjson.loads(await ws.recv())]
            await sim.apply_fault({"fault": "break_pu", "symbol": "BTCUSDT"})
            diffs += payloads(await collect(ws, 0.6))
        breaks = [b for a, b in zip(diffs, diffs[1:], strict=False) if b["pu"] != a["u"]]
        assert len(breaks) == 1 and len(diffs) >= 4

    run(scenario())


def test_repeat_sends_the_next_frames_twice() -> None:
    async def scenario() -> None:
        async with running_simulator(CONFIG) as sim, connect(f"{sim.ws_base}/market/ws/{AGG}") as ws:
            await sim.apply_fault({"fault": "repeat", "stream": AGG, "count": 4})
            frames = await collect_then_unsubscribe(ws, 0.5, [AGG])
            tally = sim.accounting()["connections"]["c1"]["streams"][AGG]
        ids = [orjson.loads(frame)["a"] for frame in frames]
        assert len(ids) - len(set(ids)) == 4 == tally["repeated"]
        repeats = [i for i in range(1, len(ids)) if ids[i] == ids[i - 1]]
        assert len(repeats) == 4 and repeats == list(range(repeats[0], repeats[0] + 8, 2)), (
            "each copy follows its original"
        )

    run(scenario())


def test_burst_multiplies_the_frame_rate_and_clear_ends_it() -> None:
    async def scenario() -> None:
        config = SimulatorConfig(symbols=("ETHUSDT",), seed=4, rate=0.5)
        async with running_simulator(config) as sim, connect(f"{sim.ws_base}/public/ws/ethusdt@bookTicker") as ws:
            normal = len(await collect(ws, 0.5))
            await sim.apply_fault({"fault": "burst", "seconds": 30, "multiplier": 20})
            burst = len(await collect(ws, 0.5))
            await sim.apply_fault({"fault": "clear"})
            await collect(ws, 0.05)
            cleared = len(await collect(ws, 0.5))
        assert burst > 8 * max(normal, 1) and cleared < burst / 4

    run(scenario())


def test_lifetime_fault_cuts_connections_older_than_the_new_lifetime() -> None:
    async def scenario() -> None:
        async with running_simulator(CONFIG) as sim:
            async with connect(f"{sim.ws_base}/market/ws/{AGG}") as old:
                await asyncio.sleep(0.4)
                async with connect(f"{sim.ws_base}/market/ws/{AGG}") as young:
                    await sim.apply_fault({"fault": "lifetime", "seconds": 0.3})
                    await collect(old, 0.2)
                    assert old.close_code == 1000 and old.close_reason == "max lifetime"
                    assert young.state.name == "OPEN"
                    await collect(young, 1.0)
                    assert young.close_code == 1000
            reasons = {cid: c["close_reason"] for cid, c in sim.accounting()["connections"].items()}
        assert reasons == {"c1": "max lifetime", "c2": "max lifetime"}

    run(scenario())


def test_rest_status_fault_fails_the_next_requests_then_recovers() -> None:
    async def scenario() -> None:
        async with running_simulator(CONFIG) as sim:
            fault = {"fault": "rest_status", "status": 418, "count": 2, "retry_after": 120}
            assert (await admin_fault(sim.admin_base, fault))[0] == 200
            url = f"{sim.rest_base}/fapi/v1/depth?symbol=ETHUSDT&limit=5"
            answers = [await http_get(url) for _ in range(3)]
            rejected = sim.accounting()["rest"]["rejected"]
        assert [status for status, _, _ in answers] == [418, 418, 200]
        assert answers[0][1]["Retry-After"] == "120"
        assert rejected["418"] == 2

    run(scenario())

"""USDⓈ-M's private and legacy websocket paths (handshake, subscriptions, silence) and the simulator over TLS."""

from __future__ import annotations

import asyncio
import signal
import ssl
from pathlib import Path

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from harvest_pipeline.simulator.server import MAX_CONTROL_PER_SECOND, Simulator
from tests.simulator.test_command import start_simulator, wait_for_file
from tests.simulator.ws_clients import admin_fault, collect, http_get, run

SILENCE_S = 3.0
AGG_TRADES = "btcusdt@aggTrade"
BUSY = SimulatorConfig(symbols=("BTCUSDT",), rate=3.0)


async def control(ws: ClientConnection, method: str, request_id: int, params: list[str] | None = None) -> object:
    """Send a control message and return its reply's ``result`` (data frames before it would fail the test)."""
    message = {"method": method, "id": request_id, **({"params": params} if params is not None else {})}
    await ws.send(orjson.dumps(message).decode())
    reply = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
    assert reply.get("id") == request_id, f"expected the reply to {method}, got {reply}"
    return reply["result"]


async def silent_while_market_flows(sim: Simulator, silent: ClientConnection) -> tuple[list[str], list[str]]:
    """Frames on ``silent`` and on ``/market/ws/btcusdt@aggTrade`` over the same ``SILENCE_S`` seconds."""
    async with connect(f"{sim.ws_base}/market/ws/{AGG_TRADES}") as market:
        return await asyncio.gather(collect(silent, SILENCE_S), collect(market, SILENCE_S))


def connection_row(sim: Simulator, path: str) -> tuple[dict, dict]:
    """The open connection of ``path`` as ``connection_list()`` and the accounting show it."""
    listed = next(row for row in sim.connection_list() if row["path"] == path)
    return listed, sim.accounting()["connections"][listed["id"]]


def test_the_private_route_acknowledges_subscriptions_and_sends_no_frames() -> None:
    path = "/private/ws/listenkey1"

    async def scenario() -> tuple[list[str], list[str], list[object], tuple[dict, dict]]:
        async with running_simulator(BUSY) as sim, connect(f"{sim.ws_base}{path}") as private:
            replies = [
                await control(private, "SUBSCRIBE", 1, [AGG_TRADES, "btcusdt@depth@100ms"]),
                await control(private, "UNSUBSCRIBE", 2, ["btcusdt@depth@100ms"]),
                await control(private, "LIST_SUBSCRIPTIONS", 3),
            ]
            silent, market = await silent_while_market_flows(sim, private)
            return silent, market, replies, connection_row(sim, path)

    silent, market, replies, (listed, accounted) = run(scenario())
    assert replies == [None, None, ["listenkey1", AGG_TRADES]]
    assert silent == [] and len(market) > 10, "user data is not simulated; market data flows meanwhile"
    assert listed["route"] == "private" and listed["streams"] == ["listenkey1", AGG_TRADES]
    assert accounted["route"] == "private" and accounted["streams"][AGG_TRADES]["frames"] == 0


def test_private_stream_path_accepts_the_handshake_without_streams() -> None:
    async def scenario() -> object:
        async with running_simulator(BUSY) as sim, connect(f"{sim.ws_base}/private/stream") as private:
            return await control(private, "LIST_SUBSCRIPTIONS", 1)

    assert run(scenario()) == []


def test_legacy_combined_path_acknowledges_then_stays_silent_while_market_gets_frames() -> None:
    path = f"/stream?streams={AGG_TRADES}"

    async def scenario() -> tuple[list[str], list[str], object, tuple[dict, dict]]:
        async with running_simulator(BUSY) as sim, connect(f"{sim.ws_base}{path}") as legacy:
            assert await control(legacy, "SUBSCRIBE", 1, ["btcusdt@bookTicker"]) is None
            listed = await control(legacy, "LIST_SUBSCRIPTIONS", 2)
            silent, market = await silent_while_market_flows(sim, legacy)
            return silent, market, listed, connection_row(sim, path)

    silent, market, listed, (row, accounted) = run(scenario())
    assert listed == [AGG_TRADES, "btcusdt@bookTicker"]
    assert silent == [] and len(market) > 10
    assert row["route"] == "legacy"
    assert accounted["route"] == "legacy" and accounted["path"] == path
    assert {tally["frames"] for tally in accounted["streams"].values()} == {0}


def test_legacy_raw_path_acknowledges_then_stays_silent_while_market_gets_frames() -> None:
    path = f"/ws/{AGG_TRADES}/btcusdt@depth@100ms"

    async def scenario() -> tuple[list[str], list[str], object, tuple[dict, dict]]:
        async with running_simulator(BUSY) as sim, connect(f"{sim.ws_base}{path}") as legacy:
            listed = await control(legacy, "LIST_SUBSCRIPTIONS", 1)
            silent, market = await silent_while_market_flows(sim, legacy)
            return silent, market, listed, connection_row(sim, path)

    silent, market, listed, (row, accounted) = run(scenario())
    assert listed == [AGG_TRADES, "btcusdt@depth@100ms"]
    assert silent == [] and len(market) > 10
    assert row["route"] == accounted["route"] == "legacy"
    assert {tally["frames"] for tally in accounted["streams"].values()} == {0}


def test_faults_and_limits_reach_private_and_legacy_connections() -> None:
    async def scenario() -> tuple[tuple[int, object], dict, bool]:
        async with (
            running_simulator(BUSY) as sim,
            connect(f"{sim.ws_base}/ws/{AGG_TRADES}") as legacy,
            connect(f"{sim.ws_base}/private/ws") as private,
        ):
            legacy_id = connection_row(sim, f"/ws/{AGG_TRADES}")[0]["id"]
            dropped = await admin_fault(sim.admin_base, {"fault": "drop_connection", "connection": legacy_id})
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(legacy.recv(), 5)
            for request_id in range(MAX_CONTROL_PER_SECOND + 1):
                await private.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": request_id}).decode())
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(private.recv(), 5)
            return dropped, sim.accounting()["connections"], bool(sim.connections)

    dropped, connections, still_open = run(scenario())
    assert dropped == (200, {"ok": True, "fault": "drop_connection"})
    assert connections["c1"]["close_reason"] == "fault drop_connection"
    assert connections["c2"]["close_reason"] == f"more than {MAX_CONTROL_PER_SECOND} control messages in one second"
    assert not still_open


def test_spot_keeps_serving_its_unrouted_paths_and_has_no_private_route() -> None:
    async def scenario() -> tuple[list[str], int]:
        async with running_simulator(SimulatorConfig(market="spot", symbols=("BTCUSDT",), rate=3.0)) as sim:
            async with connect(f"{sim.ws_base}/stream?streams={AGG_TRADES}") as ws:
                frames = await collect(ws, 1.5)
            with pytest.raises(InvalidStatus) as refused:
                await connect(f"{sim.ws_base}/private/ws")
            return frames, refused.value.response.status_code

    frames, private_status = run(scenario())
    assert len(frames) > 3 and orjson.loads(frames[0])["stream"] == AGG_TRADES
    assert private_status == 404


def trusting(ca_file: Path | None) -> ssl.SSLContext:
    """A client context that trusts only ``ca_file`` (strict X.509 checks, as Python 3.13+ clients do by default)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


def test_tls_serves_wss_and_https_to_clients_that_trust_the_written_certificate() -> None:
    async def scenario() -> tuple[Simulator, list[str], list[str], int, int]:
        async with running_simulator(SimulatorConfig(symbols=("BTCUSDT",), rate=3.0, tls=True)) as sim:
            context = trusting(sim.ca_file)
            async with connect(f"{sim.ws_base}/market/ws/{AGG_TRADES}", ssl=context) as ws:
                frames = await collect(ws, 1.0)
            by_name = f"{sim.ws_base}/public/ws/btcusdt@bookTicker"
            async with connect(by_name, ssl=context, server_hostname="localhost") as ws:
                book = await collect(ws, 0.5)
            url = f"{sim.rest_base}/fapi/v1/exchangeInfo"
            async with aiohttp.ClientSession() as session, session.get(url, ssl=context) as response:
                rest_status = response.status
            admin_status, _, _ = await http_get(f"{sim.admin_base}/admin/connections")
            ca_file = sim.ca_file
            assert ca_file is not None and ca_file.exists()
        return sim, frames, book, rest_status, admin_status

    sim, frames, book, rest_status, admin_status = run(scenario())
    assert sim.ws_base.startswith("wss://127.0.0.1:") and sim.rest_base.startswith("https://127.0.0.1:")
    assert sim.admin_base.startswith("http://")
    assert len(frames) > 3 and orjson.loads(frames[0])["e"] == "aggTrade"
    assert book, "the certificate also names localhost"
    assert rest_status == 200 and admin_status == 200
    assert sim.ca_file is not None and not sim.ca_file.exists(), "a temporary certificate is removed on stop"


def test_tls_refuses_clients_that_do_not_trust_the_certificate() -> None:
    async def scenario() -> None:
        async with running_simulator(SimulatorConfig(symbols=("BTCUSDT",), tls=True)) as sim:
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(f"{sim.ws_base}/market/ws/{AGG_TRADES}", ssl=ssl.create_default_context())
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    await session.get(f"{sim.rest_base}/fapi/v1/exchangeInfo")

    run(scenario())


def test_simulate_tls_writes_the_certificate_next_to_the_ready_file(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    process = start_simulator("--symbols", "BTCUSDT", "--rate", "3", "--tls", "--ready-file", str(ready))
    try:
        info = wait_for_file(ready, process)

        async def client() -> list[str]:
            context = trusting(Path(info["ca_file"]))
            async with connect(f"{info['ws_base']}/market/ws/{AGG_TRADES}", ssl=context) as ws:
                return await collect(ws, 1.0)

        frames = run(client())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert info["ca_file"] == str(tmp_path / "ready.ca.pem")
    assert info["ws_base"].startswith("wss://") and info["rest_base"].startswith("https://")
    assert frames

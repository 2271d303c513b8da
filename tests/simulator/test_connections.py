"""Connection management over real sockets: slow clients, silent clients, accounting, determinism."""

from __future__ import annotations

import asyncio
import socket

import orjson
from websockets.asyncio.client import connect

from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from tests.simulator.ws_clients import collect, collect_then_unsubscribe, http_get, run

HANDSHAKE = (
    "GET /market/ws/btcusdt@aggTrade HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_a_client_that_cannot_keep_up_is_dropped_instead_of_buffered() -> None:
    async def scenario() -> None:
        config = SimulatorConfig(symbols=("BTCUSDT",), rate=20.0, send_queue_frames=200, send_buffer_bytes=8192)
        async with running_simulator(config) as sim:
            host, port = sim.ws_base.removeprefix("ws://").split(":")
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((host, int(port)))
            slow = await connect(f"{sim.ws_base}/public/ws/btcusdt@bookTicker", sock=sock, max_queue=1)
            for _ in range(100):
                await asyncio.sleep(0.05)
                if not sim.connections:
                    break
            slow.transport.abort()
            record = sim.accounting()["connections"]["c1"]
        assert record["close_reason"] == "slow consumer: 200 frames queued"
        assert record["streams"]["btcusdt@bookTicker"]["frames"] < 2000, "the kernel buffers stay small"

    run(scenario())


def test_a_client_that_never_answers_pings_is_dropped() -> None:
    async def scenario() -> None:
        config = SimulatorConfig(symbols=("BTCUSDT",), rate=0.2, ping_interval_s=0.2, ping_timeout_s=0.3)
        async with running_simulator(config) as sim:
            host, port = sim.ws_base.removeprefix("ws://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(HANDSHAKE.format(host=host).encode())
            assert (await reader.readline()).startswith(b"HTTP/1.1 101")
            async with asyncio.timeout(5):
                while await reader.read(4096):
                    pass  # read pings, never pong
            writer.close()
            await asyncio.sleep(0.05)
            assert sim.accounting()["connections"]["c1"]["close_reason"] == "ping timeout"

    run(scenario())


def test_connections_are_closed_at_the_configured_max_lifetime() -> None:
    async def scenario() -> None:
        config = SimulatorConfig(symbols=("BTCUSDT",), max_lifetime_s=0.4)
        async with running_simulator(config) as sim, connect(f"{sim.ws_base}/market/ws/btcusdt@aggTrade") as ws:
            loop = asyncio.get_running_loop()
            opened = loop.time()
            await collect(ws, 3.0)
            lived = loop.time() - opened
        assert (ws.close_code, ws.close_reason) == (1000, "max lifetime")
        assert 0.35 <= lived <= 1.0

    run(scenario())


def test_accounting_totals_match_what_a_client_counted() -> None:
    async def scenario() -> None:
        config = SimulatorConfig(symbols=("BTCUSDT", "ETHUSDT"), seed=5, rate=3.0)
        streams = ["btcusdt@bookTicker", "ethusdt@depth@100ms", "ethusdt@depth20@100ms"]
        async with running_simulator(config) as sim:
            async with connect(f"{sim.ws_base}/public/stream?streams={'/'.join(streams)}") as ws:
                await sim.apply_fault({"fault": "repeat", "stream": "btcusdt@bookTicker", "count": 3})
                await sim.apply_fault({"fault": "malformed", "stream": "ethusdt@depth@100ms", "count": 2})
                frames = await collect_then_unsubscribe(ws, 0.8, streams)
            await asyncio.sleep(0.1)
            accounting = sim.accounting()
            _, _, over_http = await http_get(f"{sim.admin_base}/admin/accounting")
        assert over_http == accounting
        counted = {stream: 0 for stream in streams}
        ids: dict[str, list[int]] = {stream: [] for stream in streams}
        for frame in frames:
            try:
                message = orjson.loads(frame)
            except orjson.JSONDecodeError:
                counted["ethusdt@depth@100ms"] += 1
                continue
            counted[message["stream"]] += 1
            ids[message["stream"]].append(message["data"]["u"])
        for stream in streams:
            total = accounting["streams"][stream]
            assert total["frames"] + total["malformed"] + total["repeated"] == counted[stream] > 0
            assert (total["first_id"], total["last_id"]) == (ids[stream][0], ids[stream][-1])
        assert accounting["streams"]["btcusdt@bookTicker"]["repeated"] == 3
        assert accounting["streams"]["ethusdt@depth@100ms"]["malformed"] == 2
        assert accounting["connections"]["c1"]["close_reason"] == "client closed (1000)"

    run(scenario())


def relative_ids(message: dict, starts: dict[str, int]) -> dict:
    """``message`` without its timestamps, each id in ``starts`` taken relative to where the run's ids began."""
    return {
        key: value - starts[key] if key in starts else value for key, value in message.items() if key not in ("E", "T")
    }


def test_the_same_seed_sends_the_same_trades_and_diffs_up_to_where_its_ids_start() -> None:
    async def record(seed: int) -> tuple[list[dict], dict[int, dict]]:
        config = SimulatorConfig(symbols=("BTCUSDT",), seed=seed, rate=2.0)
        async with running_simulator(config) as sim:
            first = sim.exchange.feeds["BTCUSDT"].market.first_ids
            async with connect(f"{sim.ws_base}/public/ws/btcusdt@depth@100ms") as ws:
                diffs = [orjson.loads(frame) for frame in await collect(ws, 0.8)]
            _, _, trades = await http_get(f"{sim.rest_base}/fapi/v1/aggTrades?symbol=BTCUSDT&fromId=0&limit=50")
        trade_starts = {"a": first.agg_id, "f": first.trade_id, "l": first.trade_id}
        diff_starts = dict.fromkeys(("U", "u", "pu"), first.update_id)
        return (
            [relative_ids(trade, trade_starts) for trade in trades],
            {diff["u"] - first.update_id: relative_ids(diff, diff_starts) for diff in diffs},
        )

    async def scenario() -> None:
        (trades_a, diffs_a), (trades_b, diffs_b), (trades_c, _) = await asyncio.gather(
            record(21), record(21), record(22)
        )
        assert len(trades_a) == 50 and trades_a == trades_b and trades_a != trades_c
        common = set(diffs_a) & set(diffs_b)
        assert len(common) >= 3
        assert all(diffs_a[u] == diffs_b[u] for u in common)

    run(scenario())

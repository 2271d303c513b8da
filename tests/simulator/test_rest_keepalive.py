"""REST on keep-alive HTTP/1.1 connections, on the same port as the websockets: several requests (sequential and
pipelined) on one TCP connection, plain and TLS; ``Connection: close``, idle connections, malformed requests and a
stopping server each end it as HTTP says; a websocket beside it is unaffected."""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
import time
from urllib.parse import urlsplit

import h11
import orjson
from websockets.asyncio.client import connect

from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from harvest_pipeline.simulator.server import Simulator
from tests.simulator.ws_clients import collect, run

CONFIG = SimulatorConfig(symbols=("BTCUSDT",))
PATHS = (
    "/fapi/v1/exchangeInfo",
    "/fapi/v1/depth?symbol=BTCUSDT&limit=5",
    "/fapi/v1/aggTrades?symbol=BTCUSDT&limit=3",
    "/fapi/v1/ticker/bookTicker?symbol=BTCUSDT",
    "/fapi/v1/time",
)


def address(sim: Simulator) -> tuple[str, int]:
    url = urlsplit(sim.rest_base)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


def get_all(connection: http.client.HTTPConnection, paths: tuple[str, ...]) -> list[tuple[int, str | None, bytes]]:
    """GET every path on ``connection`` in turn; asserts the socket is never replaced (http.client reconnects
    silently when the server closed)."""
    answers, first_socket = [], None
    for path in paths:
        connection.request("GET", path)
        response = connection.getresponse()
        answers.append((response.status, response.getheader("Connection"), response.read()))
        first_socket = first_socket or connection.sock
        assert connection.sock is first_socket, f"a new connection was opened for {path}"
    return answers


def read_responses(sock: socket.socket, count: int) -> list[h11.Response | bytes]:
    """Read ``count`` responses from ``sock`` (status line objects and bodies, in order) with h11's client side."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))  # our side's state only
    client.send(h11.EndOfMessage())
    events: list[h11.Response | bytes] = []
    body = b""
    while len([e for e in events if isinstance(e, bytes)]) < count:
        event = client.next_event()
        if event is h11.NEED_DATA:
            data = sock.recv(65536)
            assert data, f"connection closed after {len(events) // 2} of {count} responses"
            client.receive_data(data)
        elif isinstance(event, h11.Response):
            events.append(event)
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            events.append(body)
            body = b""
            if len([e for e in events if isinstance(e, bytes)]) < count:
                client.start_next_cycle()
                client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
                client.send(h11.EndOfMessage())
    return events


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    sock.settimeout(within_s)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def test_one_connection_carries_every_rest_request_without_connection_close() -> None:
    async def scenario() -> tuple[list[tuple[int, str | None, bytes]], int, int]:
        async with running_simulator(CONFIG) as sim:
            host, port = address(sim)
            connection = http.client.HTTPConnection(host, port, timeout=5)
            answers = await asyncio.to_thread(get_all, connection, PATHS * 3)
            connection.close()
            rest = sim.accounting()["rest"]
            return answers, rest["connections"], rest["requests"]

    answers, connections, requests = run(scenario())
    assert [status for status, _, _ in answers] == [200] * len(PATHS) * 3
    assert {header for _, header, _ in answers} == {None}, "no Connection: close on a keep-alive request"
    assert orjson.loads(answers[1][2])["lastUpdateId"] > 0 and isinstance(orjson.loads(answers[2][2]), list)
    assert (connections, requests) == (1, len(PATHS) * 3)


def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    def pipelined(host: str, port: int) -> list[h11.Response | bytes]:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"".join(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for path in PATHS[:3]))
            return read_responses(sock, 3)

    async def scenario() -> list[h11.Response | bytes]:
        async with running_simulator(CONFIG) as sim:
            return await asyncio.to_thread(pipelined, *address(sim))

    events = run(scenario())
    statuses = [e.status_code for e in events if isinstance(e, h11.Response)]
    bodies = [orjson.loads(e) for e in events if isinstance(e, bytes)]
    assert statuses == [200, 200, 200]
    assert "symbols" in bodies[0] and "lastUpdateId" in bodies[1] and isinstance(bodies[2], list), "answers in order"


def test_connection_close_http_1_0_malformed_and_idle_requests_end_the_connection() -> None:
    def exchange(host: str, port: int, raw: bytes, idle_s: float = 5.0) -> tuple[bytes, bool]:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(raw)
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(65536)
            sock.settimeout(5)
            rest = b""
            while True:  # the server closes after the answer: read to the end
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    return head + rest, False
                if not data:
                    return head + rest, True
                rest += data
                if idle_s < 5.0:
                    return head + rest, closed_by_server(sock, idle_s)

    async def scenario() -> dict[str, tuple[bytes, bool]]:
        async with running_simulator(CONFIG) as sim:
            host, port = address(sim)
            sim.rest_sessions.idle_timeout_s = 0.5
            ask = f"GET {PATHS[4]} HTTP/1.1\r\nHost: {host}\r\n".encode()
            return {
                "close": await asyncio.to_thread(exchange, host, port, ask + b"Connection: close\r\n\r\n"),
                "http/1.0": await asyncio.to_thread(exchange, host, port, f"GET {PATHS[4]} HTTP/1.0\r\n\r\n".encode()),
                "malformed": await asyncio.to_thread(exchange, host, port, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"),
                "idle": await asyncio.to_thread(exchange, host, port, ask + b"\r\n", 2.0),
            }

    started = time.monotonic()
    answers = run(scenario())
    for name in ("close", "http/1.0"):
        head, closed = answers[name]
        assert head.split(b"\r\n")[0].endswith(b"200 OK") and closed, name
    head, closed = answers["malformed"]
    assert head.split(b"\r\n")[0].endswith(b"400 Bad Request") and closed
    head, closed = answers["idle"]
    assert head.split(b"\r\n")[0].endswith(b"200 OK") and b"connection: close" not in head.lower()
    assert closed, "an idle keep-alive connection is closed after the idle timeout"
    assert time.monotonic() - started < 20


def test_plain_gets_on_websocket_routes_and_unknown_paths_get_426_and_404() -> None:
    def status_of(host: str, port: int, path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(host, port, timeout=5)
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()

    async def scenario() -> list[tuple[int, bytes]]:
        async with running_simulator(CONFIG) as sim:
            host, port = address(sim)
            return [
                await asyncio.to_thread(status_of, host, port, path)
                for path in ("/market/ws/btcusdt@aggTrade", "/nowhere")
            ]

    (upgrade, upgrade_text), (missing, missing_text) = run(scenario())
    assert upgrade == 426 and b"websocket route" in upgrade_text
    assert missing == 404 and b"/public/" in missing_text


def test_tls_keep_alive_and_a_websocket_beside_an_open_rest_connection_and_stop_closes_it() -> None:
    async def scenario() -> tuple[list[tuple[int, str | None, bytes]], list[str], bool, float]:
        async with running_simulator(SimulatorConfig(symbols=("BTCUSDT",), tls=True)) as sim:
            assert sim.ca_file is not None
            context = ssl.create_default_context(cafile=str(sim.ca_file))
            host, port = address(sim)
            connection = http.client.HTTPSConnection(host, port, timeout=5, context=context)
            answers = await asyncio.to_thread(get_all, connection, PATHS)
            async with connect(f"{sim.ws_base}/market/ws/btcusdt@aggTrade", ssl=context) as ws:
                frames = await collect(ws, 1.5)
            raw = connection.sock
            stopping = time.monotonic()
        stopped_in = time.monotonic() - stopping
        closed = await asyncio.to_thread(closed_by_server, raw, 2.0)
        return answers, frames, closed, stopped_in

    answers, frames, closed, stopped_in = run(scenario())
    assert [status for status, _, _ in answers] == [200] * len(PATHS)
    assert frames, "the websocket on the same port streams while a REST connection is open"
    assert closed and stopped_in < 5, "stopping the simulator closes an open keep-alive connection at once"

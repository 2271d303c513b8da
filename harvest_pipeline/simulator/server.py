"""The simulator server: websocket streams and REST on one port, the admin API on another, the market clock.

One process serves one market (``SimulatorConfig.market``): its REST paths, and its websocket paths, routed
(``/public/...``, ``/market/...`` on USDⓈ-M) or not (``/ws/...``, ``/stream?streams=`` on COIN-M and spot). USDⓈ-M
also accepts ``/private/...`` (user data, not simulated) and its legacy unrouted paths; both acknowledge subscriptions
and send no frames, as Binance does since market streams moved to the routes.

``running_simulator(config)`` is the in-process entry point (tests, benchmarks, ``harvest up``); ``harvest simulate``
runs the same object in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from harvest_pipeline.simulator import wire
from harvest_pipeline.simulator.accounting import ConnectionRecord, RestTally, accounting_json
from harvest_pipeline.simulator.admin import AdminServer
from harvest_pipeline.simulator.config import SimulatorConfig
from harvest_pipeline.simulator.connections import ClientConnection, Hub
from harvest_pipeline.simulator.exchange import TICK_S, Exchange
from harvest_pipeline.simulator.faults import FaultError, FaultState, parse_fault
from harvest_pipeline.simulator.http_front import HttpAnswer, RestSessions
from harvest_pipeline.simulator.listings import ListingError, listing_request
from harvest_pipeline.simulator.replay import Replay
from harvest_pipeline.simulator.rest import RestApi
from harvest_pipeline.simulator.tls import server_context

log = logging.getLogger(__name__)
websockets_log = logging.getLogger("harvest_pipeline.simulator.websockets")
websockets_log.setLevel(logging.WARNING)  # websockets logs every REST answer and connection at INFO

HOUSEKEEPING_S = 0.05
MAX_CLOCK_LAG_S = 1.0
"""An overloaded market clock skips ticks beyond this lag instead of sending ever staler frames."""
STOP_DRAIN_S = 1.0
"""At stop, how long frames held for their publish latency may wait for their event time before going out anyway,
and then how long the connections may take to write what they queued (a close clears a connection's queue)."""
SERVER_HEADER = "harvest-simulator"
MAX_CONTROL_STREAMS = 1024
MAX_CONTROL_PER_SECOND = 10
"""Binance drops a connection that sends more incoming messages than this per second."""


def parse_ws_path(path: str, routed: bool = True) -> tuple[str | None, bool, list[str]] | None:
    """``(route, combined, streams)`` of a websocket path: ``/market/stream?streams=a/b`` on a routed market, where
    the unrouted ``/stream?streams=a/b`` is the silent ``legacy`` route; route None on an unrouted market. None if
    the market serves no such path."""
    url = urlsplit(path)
    parts = url.path.strip("/").split("/")
    route: str | None = None
    if routed and parts[0] in wire.ROUTES:
        if len(parts) < 2:
            return None
        route, parts = parts[0], parts[1:]
    elif routed:
        route = wire.LEGACY
    if parts[0] == "ws":
        return route, False, [part for part in parts[1:] if part]
    if parts[0] == "stream" and len(parts) == 1:
        streams = parse_qs(url.query).get("streams", [""])[-1]
        return route, True, [stream for stream in streams.split("/") if stream]
    return None


class Simulator:
    """A running simulator. Create with ``running_simulator``; its attributes are the contract's in-process API."""

    def __init__(self, config: SimulatorConfig, ca_file: Path | None = None):
        """``ca_file``: where a TLS simulator (``config.tls``) writes its certificate; None: a temporary directory
        that is removed on stop."""
        self.config = config
        self.ca_file: Path | None = ca_file if config.tls else None
        """The PEM of the self-signed certificate a ``wss://``/``https://`` client trusts; None without TLS."""
        self._ca_dir: Path | None = None
        self.faults = FaultState()
        self.hub = Hub(self.faults)
        self.exchange = Exchange(config, self.hub, self.faults, start_ms=config.exchange_ms())
        self.routed = self.exchange.dialect.market.routed
        self.rest_tally = RestTally()
        self.replay = (
            Replay(config.replay, config.replay_speed, self.hub, config.agg_trade_history) if config.replay else None
        )
        market = self.replay.market if self.replay is not None else self.exchange
        self.rest = RestApi(
            self.exchange, market, self.faults, config.weight_limit_per_minute, self.rest_tally, config.exchange_ms
        )
        self.max_lifetime_s = config.max_lifetime_s
        self.records: list[ConnectionRecord] = []
        self.connections: dict[str, ClientConnection] = {}
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self.rest_sessions = RestSessions(self._answer_http, SERVER_HEADER, self.rest_tally.count_connection)
        self._admin = AdminServer(self)
        self._tasks: list[asyncio.Task[None]] = []
        self.ws_base = self.rest_base = self.admin_base = ""

    # ---------------------------------------------------------------------------------------------------------------
    # Life cycle

    async def start(self) -> None:
        """Listen on both ports, apply the configured faults and start the market clock (or the replay)."""
        config = self.config
        self._server = await serve(
            self._handle_connection,
            config.host,
            config.port,
            ssl=self._tls_context(),
            process_request=self._process_request,
            create_connection=self.rest_sessions.connection_class(),
            open_timeout=None,  # the front connection applies it to the handshake, not to a keep-alive REST session
            ping_interval=config.ping_interval_s,
            ping_timeout=config.ping_timeout_s,
            max_queue=64,
            compression=None,
            server_header=SERVER_HEADER,
            logger=websockets_log,
        )
        port = self._server.sockets[0].getsockname()[1]
        ws, http = ("wss", "https") if config.tls else ("ws", "http")
        self.ws_base, self.rest_base = f"{ws}://{config.host}:{port}", f"{http}://{config.host}:{port}"
        self.admin_base = await self._admin.start(config.admin_port)
        for fault in config.faults:
            await self.apply_fault(fault)
        source = self.replay.run() if self.replay is not None else self._run_market_clock()
        self._tasks = [asyncio.create_task(source), asyncio.create_task(self._run_housekeeping())]
        log.info("simulator (%s) listening: streams %s, admin %s", config.market, self.ws_base, self.admin_base)

    async def stop(self) -> None:
        """Stop the clock, close every connection with a close frame and stop listening."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.exchange.publisher.drain(STOP_DRAIN_S)  # frames held for their publish latency go out first
        flush_until = asyncio.get_running_loop().time() + STOP_DRAIN_S
        await asyncio.gather(*(conn.flush(flush_until) for conn in list(self.connections.values())))
        for conn in list(self.connections.values()):
            conn.close("server shutdown")
        self.rest_sessions.close_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self._admin.stop()
        if self._ca_dir is not None:
            shutil.rmtree(self._ca_dir, ignore_errors=True)

    def _tls_context(self) -> ssl.SSLContext | None:
        """The websocket/REST port's TLS context with a fresh certificate written to ``ca_file``; None without TLS."""
        if not self.config.tls:
            return None
        if self.ca_file is None:
            self._ca_dir = Path(tempfile.mkdtemp(prefix="harvest-simulator-"))
            self.ca_file = self._ca_dir / "simulator.ca.pem"
        return server_context(self.ca_file)

    async def _run_market_clock(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += TICK_S
            delay = next_at - loop.time()
            if delay < -MAX_CLOCK_LAG_S:
                log.warning("market clock %.1f s behind (CPU overloaded); skipping to now", -delay)
                next_at = loop.time()
            await asyncio.sleep(max(delay, 0.0))
            self.exchange.run_tick(self.config.exchange_ms(), loop.time())

    async def _run_housekeeping(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            self._cut_old_connections(loop.time())

    def _cut_old_connections(self, now: float) -> None:
        for conn in list(self.connections.values()):
            if now - conn.opened_at >= self.max_lifetime_s:
                conn.close("max lifetime")

    # ---------------------------------------------------------------------------------------------------------------
    # Requests and connections

    def _answer_http(self, method: str, target: str, headers: Mapping[str, str]) -> HttpAnswer:
        """A plain HTTP request on the streams port: REST, or a pointer to the websocket routes."""
        if self.rest.handles(target):
            answer = self.rest.answer(target, headers)
            json_type = ("Content-Type", "application/json")
            return HttpAnswer(answer.status, [json_type, *answer.headers.items()], answer.body)
        text = [("Content-Type", "text/plain; charset=utf-8")]
        if parse_ws_path(target, self.routed) is not None:
            return HttpAnswer(426, [*text, ("Upgrade", "websocket")], f"{target} is a websocket route\n".encode())
        return HttpAnswer(404, text, self._no_route(target).encode())

    def _no_route(self, path: str) -> str:
        served = "/public/..., /market/... or /private/..." if self.routed else "/ws/... or /stream?streams=..."
        return f"no websocket route {path}; use {served}\n"

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if parse_ws_path(request.path, self.routed) is None:
            return connection.respond(404, self._no_route(request.path))
        return None

    async def _handle_connection(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        parsed = parse_ws_path(path, self.routed)
        assert parsed is not None, "process_request answers every other path"
        route, combined, streams = parsed
        if self.config.send_buffer_bytes is not None:
            client_socket = ws.transport.get_extra_info("socket")
            client_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.send_buffer_bytes)
        record = ConnectionRecord(f"c{next(self._ids)}", route, path, time.time_ns() // 1_000_000)
        self.records.append(record)
        conn = ClientConnection(ws, record, combined, self.config.send_queue_frames, asyncio.get_running_loop().time())
        self.connections[record.connection_id] = conn
        self.hub.subscribe(conn, streams)
        sender = asyncio.create_task(conn.run_sender())
        try:
            async for message in ws:
                if conn.control_rate_exceeded(asyncio.get_running_loop().time(), MAX_CONTROL_PER_SECOND):
                    conn.drop(f"more than {MAX_CONTROL_PER_SECOND} control messages in one second")
                    break
                self._answer_control(conn, message)
        except ConnectionClosed:
            pass
        finally:
            self.hub.remove(conn)
            self.connections.pop(record.connection_id, None)
            sender.cancel()
            record.closed_ms = time.time_ns() // 1_000_000
            if record.close_reason is None:
                record.close_reason = _close_reason(ws)
            conn.closed = True

    def _answer_control(self, conn: ClientConnection, message: str | bytes) -> None:
        try:
            request = orjson.loads(message)
            method, params, request_id = request["method"], request.get("params", []), request.get("id")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.hub.send_control(conn, wire.control_error(None, "Invalid request: not a JSON control frame"))
            return
        valid_params = isinstance(params, list) and all(isinstance(p, str) and "@" in p for p in params)
        if method in ("SUBSCRIBE", "UNSUBSCRIBE") and valid_params:
            if method == "UNSUBSCRIBE":
                self.hub.unsubscribe(conn, params)
            elif len(conn.streams) + len(params) > MAX_CONTROL_STREAMS:
                self.hub.send_control(conn, wire.control_error(request_id, "Invalid request: too many streams"))
                return
            else:
                self.hub.subscribe(conn, params)
            self.hub.send_control(conn, wire.control_reply(request_id))
        elif method == "LIST_SUBSCRIPTIONS":
            self.hub.send_control(conn, wire.control_reply(request_id, list(conn.streams)))
        else:
            self.hub.send_control(conn, wire.control_error(request_id, f"Invalid request: method {method!r}"))

    # ---------------------------------------------------------------------------------------------------------------
    # Admin API

    def accounting(self) -> dict[str, Any]:
        """What was sent so far, per connection and stream (the contract's accounting JSON)."""
        exchange = self.exchange
        trades = exchange.trades_json(self.config.exchange_ms())
        return accounting_json(
            self.records, self.rest_tally, trades, exchange.liquidations_json(), exchange.listings_json()
        )

    def true_book(self, symbol: str, update_id: int, limit: int | None = None) -> dict[str, Any]:
        """The market model's book right after the latest depth diff boundary ``<= update_id`` (published or not),
        at most ``limit`` levels a side (``GET /admin/book``); ``LookupError`` with a message when there is none."""
        if self.replay is not None:
            raise LookupError("a replay has no market model, so there is no true book (run without --replay)")
        return self.exchange.true_book_json(symbol, update_id, limit)

    def connection_list(self) -> list[dict[str, Any]]:
        """The open connections (``GET /admin/connections``)."""
        return [
            {
                "id": conn.connection_id,
                "route": conn.route,
                "path": conn.record.path,
                "streams": list(conn.streams),
                "opened_ms": conn.record.opened_ms,
            }
            for conn in self.connections.values()
        ]

    async def set_listing(self, symbol: str, status: str, **fields: Any) -> dict[str, Any]:
        """List (``status="TRADING"``, optionally with instrument ``fields``) or delist (``"SETTLING"``) ``symbol``
        from the next tick on, as ``POST /admin/listing`` does; returns its exchangeInfo entry. ``ListingError`` with
        a message for a bad request."""
        request = listing_request(symbol, status, fields)
        if self.replay is not None:
            raise ListingError("a replay has no market model to list or delist symbols in (run without --replay)")
        entry = self.exchange.set_listing(*request, self.config.exchange_ms())
        log.info("listing: %s is %s", request.symbol, request.status)
        return entry

    async def apply_fault(self, request: Any) -> dict[str, Any]:
        """Apply a fault (same semantics as ``POST /admin/fault``); raises ``FaultError`` for bad requests."""
        fault = parse_fault(request)
        name = fault["fault"]
        now = asyncio.get_running_loop().time()
        result: dict[str, Any] = {"ok": True, "fault": name}
        if name == "clear":
            self.faults.clear()
            self.max_lifetime_s = self.config.max_lifetime_s
        elif name == "drop_all":
            result["dropped"] = [conn.connection_id for conn in list(self.connections.values())]
            for conn in list(self.connections.values()):
                conn.drop("fault drop_all")
        elif name in ("drop_connection", "stall_connection"):
            target = self.connections.get(fault["connection"])
            if target is None:
                open_ids = sorted(self.connections) or "none"
                raise FaultError(f"no open connection {fault['connection']!r}; open: {open_ids}")
            if name == "drop_connection":
                target.drop("fault drop_connection")
            else:
                self.faults.arm(fault, now)
        elif name in ("skip_agg_ids", "break_pu"):
            feed = self.exchange.feed(fault["symbol"])
            if feed is None:
                raise FaultError(f"symbol {fault['symbol']!r} is not simulated")
            if name == "skip_agg_ids":
                feed.skip_agg_ids(fault["count"])
            else:
                self.faults.arm(fault, now)
        elif name == "lifetime":
            self.max_lifetime_s = float(fault["seconds"])
            self._cut_old_connections(now)
        else:
            self.faults.arm(fault, now)
        log.info("fault applied: %s", orjson.dumps(fault).decode())
        return result


def _close_reason(ws: ServerConnection) -> str:
    sent, received = ws.protocol.close_sent, ws.protocol.close_rcvd
    if sent is not None and "ping timeout" in sent.reason:
        return "ping timeout"
    if received is not None:
        return f"client closed ({received.code})"
    return "connection lost"


@contextlib.asynccontextmanager
async def running_simulator(
    config: SimulatorConfig | None = None, ca_file: Path | None = None
) -> AsyncIterator[Simulator]:
    """Run a simulator for the duration of the ``async with`` block; it stops cleanly on exit. ``ca_file``: where a
    TLS simulator writes its certificate (default: a temporary directory)."""
    simulator = Simulator(config or SimulatorConfig(), ca_file)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()

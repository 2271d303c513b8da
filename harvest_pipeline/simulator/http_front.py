"""The simulator's one port for websockets and REST, with REST on keep-alive HTTP/1.1 connections as Binance serves it.

websockets answers a plain HTTP request from its handshake hook and then closes the connection, so every REST call
of a client would pay a new TCP (and TLS) connection and see ``Connection: close``. Each connection therefore starts
undecided: its request head is read first; a websocket upgrade goes on to websockets untouched, anything else is
served here with h11 (the HTTP/1.1 state machine httpx and uvicorn use), request after request on the same connection,
pipelined or not, until the client closes it, asks for ``Connection: close`` or stays idle too long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, NamedTuple

import h11
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers

HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 16_384
"""A request head longer than this is answered 431 (Binance's limit is of the same order)."""
OPEN_TIMEOUT_S = 10.0
"""From accept to a complete request head, and for the websocket handshake after it (websockets' default)."""
REST_IDLE_TIMEOUT_S = 60.0
"""A keep-alive REST connection without a request for this long is closed (clients reconnect transparently)."""


class HttpAnswer(NamedTuple):
    """One REST answer: status, headers (``Content-Length`` added here) and body."""

    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes


AnswerRequest = Callable[[str, str, Mapping[str, str]], HttpAnswer]
"""``(method, target, headers looked up case-insensitively) -> HttpAnswer``."""


class RestSessions:
    """The REST connections open on one server, so that stopping the server can close them."""

    def __init__(
        self,
        answer: AnswerRequest,
        server_header: str,
        on_connection: Callable[[], None],
        idle_timeout_s: float = REST_IDLE_TIMEOUT_S,
    ):
        self.answer = answer
        self.server_header = server_header
        self.on_connection = on_connection
        """Called once per connection that turns out to carry REST (the accounting counts them)."""
        self.idle_timeout_s = idle_timeout_s
        self.open: set[FrontConnection] = set()

    def connection_class(self) -> type[ServerConnection]:
        """What ``websockets.asyncio.server.serve(create_connection=...)`` builds for each accepted connection: a
        ``FrontConnection`` bound to these sessions."""
        return type("BoundFrontConnection", (FrontConnection,), {"sessions": self})

    def close_all(self) -> None:
        """Cut every REST connection (at server stop; every request received has been answered). Cut, not closed:
        a TLS close waits for the client's close_notify, which an idle client never sends."""
        for connection in list(self.open):
            connection.transport.abort()


def wants_websocket(head: bytes) -> bool:
    """Whether the request head asks for a websocket upgrade (an ``Upgrade`` header naming ``websocket``)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


class FrontConnection(ServerConnection):
    """A websockets server connection that first decides whether it carries a websocket or keep-alive REST."""

    sessions: RestSessions
    """Set on the class ``RestSessions.connection_class`` makes."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._sessions = self.sessions
        self._head = bytearray()
        self._decided: asyncio.Future[bool] = self.loop.create_future()
        """True for a websocket, False for REST."""
        self._http: h11.Connection | None = None
        self._idle: asyncio.TimerHandle | None = None

    # websockets' connection handler awaits this before anything else: a REST connection is served until it closes.
    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            waiters: list[asyncio.Future[Any]] = [self._decided, self.connection_lost_waiter]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if self._decided.done() and self._decided.result():
                await super().handshake(*args, **kwargs)
                return
        await self.connection_lost_waiter  # REST (or gone): the handler then finds no websocket and returns

    def data_received(self, data: bytes) -> None:
        if self._http is not None:
            self._receive_http(data)
            return
        if self._decided.done():
            super().data_received(data)
            return
        self._head += data
        if HEAD_END not in self._head and len(self._head) < MAX_HEAD_BYTES:
            return
        head = bytes(self._head)
        self._head.clear()
        if wants_websocket(head.partition(HEAD_END)[0]):
            self._decided.set_result(True)
            super().data_received(head)
            return
        self._decided.set_result(False)
        self._sessions.open.add(self)
        self._sessions.on_connection()
        self._http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._receive_http(head)

    def eof_received(self) -> None:
        if self._http is None:
            super().eof_received()
            return
        self._receive_http(b"")

    def connection_lost(self, exc: Exception | None) -> None:
        self._sessions.open.discard(self)
        if self._idle is not None:
            self._idle.cancel()
        super().connection_lost(exc)

    def _receive_http(self, data: bytes) -> None:
        http = self._http
        assert http is not None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        try:
            http.receive_data(data)
            request: h11.Request | None = None
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    break
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.EndOfMessage) and request is not None:
                    self._respond(http, request)
                    request = None
                    if http.our_state is h11.MUST_CLOSE:
                        self.transport.close()
                        return
                    http.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    self.transport.close()
                    return
        except h11.RemoteProtocolError as exc:
            self._reject(http, exc.error_status_hint, str(exc))
            return
        self._idle = self.loop.call_later(self._sessions.idle_timeout_s, self.transport.close)

    def _respond(self, http: h11.Connection, request: h11.Request) -> None:
        sessions = self._sessions
        headers = Headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers])
        method = request.method.decode("ascii")
        self._send(http, sessions.answer(method, request.target.decode("latin-1"), headers), method != "HEAD")

    def _reject(self, http: h11.Connection, status: int, reason: str) -> None:
        """Answer a request h11 could not parse (only possible while a response can still be sent) and close."""
        if http.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = f"{status} {HTTPStatus(status).phrase}: {reason}\n".encode()
            self._send(http, HttpAnswer(status, [("Content-Type", "text/plain"), ("Connection", "close")], body), True)
        self.transport.close()

    def _send(self, http: h11.Connection, answer: HttpAnswer, with_body: bool) -> None:
        headers = [
            ("Server", self._sessions.server_header),
            *answer.headers,
            ("Content-Length", str(len(answer.body))),
        ]
        response = h11.Response(status_code=answer.status, headers=headers, reason=HTTPStatus(answer.status).phrase)
        data = http.send(response) or b""
        if with_body and answer.body:
            data += http.send(h11.Data(data=answer.body)) or b""
        self.transport.write(data + (http.send(h11.EndOfMessage()) or b""))

"""The admin HTTP API on its own loopback port: accounting, open connections, fault injection, the true book and
listing or delisting symbols."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from harvest_pipeline.simulator.faults import FaultError
from harvest_pipeline.simulator.listings import ListingError, parse_listing

if TYPE_CHECKING:
    from harvest_pipeline.simulator.server import Simulator

ADMIN_HOST = "127.0.0.1"


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json")


class AdminServer:
    """``GET /admin/accounting``, ``GET /admin/connections``, ``POST /admin/fault``, ``GET /admin/book``,
    ``POST /admin/listing``; always bound to loopback."""

    def __init__(self, simulator: Simulator):
        self.simulator = simulator
        self._runner: web.AppRunner | None = None

    async def start(self, port: int) -> str:
        """Listen on ``127.0.0.1:port`` (0 = any free port); returns the base URL."""
        app = web.Application()
        app.router.add_get("/admin/accounting", self._accounting)
        app.router.add_get("/admin/connections", self._connections)
        app.router.add_post("/admin/fault", self._fault)
        app.router.add_get("/admin/book", self._book)
        app.router.add_post("/admin/listing", self._listing)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, ADMIN_HOST, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://{ADMIN_HOST}:{bound}"

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _accounting(self, request: web.Request) -> web.Response:
        return _json(self.simulator.accounting())

    async def _connections(self, request: web.Request) -> web.Response:
        return _json(self.simulator.connection_list())

    async def _fault(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _json({"ok": False, "error": f"body is not JSON: {exc}"}, status=400)
        try:
            return _json(await self.simulator.apply_fault(body))
        except FaultError as exc:
            return _json({"ok": False, "error": str(exc)}, status=400)

    async def _listing(self, request: web.Request) -> web.Response:
        try:
            symbol, status, fields = parse_listing(orjson.loads(await request.read()))
            return _json(await self.simulator.set_listing(symbol, status, **fields))
        except orjson.JSONDecodeError as exc:
            return _json({"ok": False, "error": f"body is not JSON: {exc}"}, status=400)
        except ListingError as exc:
            return _json({"ok": False, "error": str(exc)}, status=400)

    async def _book(self, request: web.Request) -> web.Response:
        query = request.query
        symbol = query.get("symbol")
        if not symbol:
            return _json({"ok": False, "error": "parameter 'symbol' is required"}, status=400)
        try:
            update_id = _int_parameter(query.get("update_id"), "update_id", minimum=0)
            limit = _int_parameter(query.get("limit"), "limit", minimum=1) if "limit" in query else None
        except ValueError as exc:
            return _json({"ok": False, "error": str(exc)}, status=400)
        try:
            return _json(self.simulator.true_book(symbol, update_id, limit))
        except LookupError as exc:
            return _json({"ok": False, "error": str(exc)}, status=404)


def _int_parameter(text: str | None, name: str, minimum: int) -> int:
    """The integer value of query parameter ``name``; ``ValueError`` saying what is wrong otherwise."""
    if text is None:
        raise ValueError(f"parameter {name!r} is required")
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"parameter {name!r} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"parameter {name!r} must be >= {minimum}, got {value}")
    return value

"""The admin HTTP API on its own loopback port: accounting, open connections and fault injection."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from harvest_pipeline.simulator.faults import FaultError

if TYPE_CHECKING:
    from harvest_pipeline.simulator.server import Simulator

ADMIN_HOST = "127.0.0.1"


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json")


class AdminServer:
    """``GET /admin/accounting``, ``GET /admin/connections``, ``POST /admin/fault``; always bound to loopback."""

    def __init__(self, simulator: Simulator):
        self.simulator = simulator
        self._runner: web.AppRunner | None = None

    async def start(self, port: int) -> str:
        """Listen on ``127.0.0.1:port`` (0 = any free port); returns the base URL."""
        app = web.Application()
        app.router.add_get("/admin/accounting", self._accounting)
        app.router.add_get("/admin/connections", self._connections)
        app.router.add_post("/admin/fault", self._fault)
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

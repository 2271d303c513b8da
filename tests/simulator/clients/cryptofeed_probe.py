"""Run a cryptofeed ``FeedHandler`` with BinanceFutures trades and L2 book against a simulator for a few seconds and
print what arrived as one JSON line: ``{"version", "trades", "books", "errors"}``.

A child process because cryptofeed's REST snapshot goes through aiohttp, whose default TLS context is built when
aiohttp is imported: the simulator's CA reaches it only as ``SSL_CERT_FILE`` in the environment of a fresh process,
which is how a user trusts a private CA. cryptofeed has no endpoint option (constructor argument or config key): its
endpoints are class attributes, so pointing it elsewhere is a subclass that sets ``websocket_endpoints`` and
``rest_endpoints``, the same way cryptofeed defines an exchange.

Usage: python cryptofeed_probe.py REST_BASE SECONDS CHANNELS@WS_ADDRESS [CHANNELS@WS_ADDRESS ...]
e.g. ``trades,l2_book@wss://127.0.0.1:9443``: one feed per argument, its channels comma-separated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import Counter
from importlib.metadata import version

from cryptofeed import FeedHandler
from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
from cryptofeed.defines import L2_BOOK, TRADES
from cryptofeed.exchanges import BinanceFutures


def simulated_binance_futures(ws_base: str, rest_base: str) -> type[BinanceFutures]:
    """BinanceFutures with the simulator's addresses in place of fstream.binance.com and fapi.binance.com."""
    routes = Routes(
        "/fapi/v1/exchangeInfo",
        l2book="/fapi/v1/depth?symbol={}&limit={}",
        open_interest="/fapi/v1/openInterest?symbol={}",
    )
    return type(
        "SimulatedBinanceFutures",
        (BinanceFutures,),
        {
            "websocket_endpoints": [WebsocketEndpoint(ws_base, options={"compression": None})],
            "rest_endpoints": [RestEndpoint(rest_base, routes=routes)],
        },
    )


async def count_updates(rest_base: str, seconds: float, feeds: list[str]) -> dict[str, object]:
    """Trades and book updates the ``feeds`` (``CHANNELS@WS_ADDRESS``) deliver in ``seconds``."""
    counts = Counter(trades=0, books=0)

    async def on_trade(trade: object, receipt_timestamp: float) -> None:
        counts["trades"] += 1

    async def on_book(book: object, receipt_timestamp: float) -> None:
        counts["books"] += 1

    handler = FeedHandler(config={"log": {"disabled": True}})
    callbacks = {TRADES: on_trade, L2_BOOK: on_book}
    for feed in feeds:
        channels, ws_address = feed.split("@", 1)
        feed_class = simulated_binance_futures(ws_address, rest_base)
        handler.add_feed(feed_class(symbols=["BTC-USDT-PERP"], channels=channels.split(","), callbacks=callbacks))
    if hasattr(handler, "run_async"):  # cryptofeed >= 3
        running = asyncio.create_task(handler.run_async(install_signal_handlers=False))
        await asyncio.sleep(seconds)
        handler.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, 10)
    else:  # cryptofeed 2.x schedules its feeds on the running loop
        handler.run(start_loop=False)
        await asyncio.sleep(seconds)
    return {"version": version("cryptofeed"), **counts}


if __name__ == "__main__":
    rest_base, seconds, feeds = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    print(json.dumps(asyncio.run(count_updates(rest_base, seconds, feeds))), flush=True)

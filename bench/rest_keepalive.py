"""REST requests per second against the simulator: one keep-alive connection vs a new connection per request.

    python bench/rest_keepalive.py [--requests 2000] [--tls]

The simulator runs in this process's background thread (``running_simulator``); a plain ``http.client`` client in
the main thread asks ``/fapi/v1/ticker/bookTicker?symbol=BTCUSDT`` ``--requests`` times on one connection, then as
many times with a new connection each (``Connection: close``, what every client got before keep-alive). Printed:
both rates and their ratio (same run).
"""

import argparse
import asyncio
import http.client
import ssl
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harvest_pipeline.simulator import SimulatorConfig, running_simulator  # noqa: E402

PATH = "/fapi/v1/ticker/bookTicker?symbol=BTCUSDT"


def serve(config: SimulatorConfig, ready: list, stop: threading.Event) -> None:
    async def main() -> None:
        async with running_simulator(config) as sim:
            ready.append(sim)
            while not stop.is_set():
                await asyncio.sleep(0.05)

    asyncio.run(main())


def connection(base: str, context: ssl.SSLContext | None) -> http.client.HTTPConnection:
    url = urlsplit(base)
    assert url.hostname and url.port
    if context is not None:
        return http.client.HTTPSConnection(url.hostname, url.port, timeout=10, context=context)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=10)


def rate(base: str, context: ssl.SSLContext | None, requests: int, keep_alive: bool) -> float:
    """Requests per second, all answered 200."""
    began = time.perf_counter()
    client = connection(base, context)
    for _ in range(requests):
        if not keep_alive:
            client = connection(base, context)
        client.request("GET", PATH, headers={} if keep_alive else {"Connection": "close"})
        response = client.getresponse()
        assert response.status == 200
        response.read()
        if not keep_alive:
            client.close()
    client.close()
    return requests / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args()
    ready: list = []
    stop = threading.Event()
    config = SimulatorConfig(symbols=("BTCUSDT",), tls=args.tls, weight_limit_per_minute=10**9)
    thread = threading.Thread(target=serve, args=(config, ready, stop), daemon=True)
    thread.start()
    while not ready:
        time.sleep(0.05)
    sim = ready[0]
    context = ssl.create_default_context(cafile=str(sim.ca_file)) if args.tls else None
    rate(sim.rest_base, context, 100, True)  # warm up
    kept = rate(sim.rest_base, context, args.requests, True)
    fresh = rate(sim.rest_base, context, args.requests, False)
    stop.set()
    thread.join(10)
    scheme = "https" if args.tls else "http"
    print(f"{scheme}, {args.requests} requests of {PATH}")
    print(f"one keep-alive connection:      {kept:,.0f} requests/s")
    print(f"a new connection per request:   {fresh:,.0f} requests/s (the simulator before keep-alive)")
    print(f"ratio keep-alive / per-request: {kept / fresh:.2f}")


if __name__ == "__main__":
    main()

"""cryptofeed's ``BinanceFutures`` (trades and L2 book) against the TLS simulator, in a child process
(``cryptofeed_probe.py`` says why and how it is pointed there).

cryptofeed accepts only ``wss://`` addresses. 3.x opens ``/market/stream?streams=`` for trades and
``/public/stream?streams=`` for depth itself; 2.x (the newest release for Python < 3.13) opens the unrouted
``/stream?streams=``, which Binance now acknowledges and leaves silent for market streams, and so does the simulator.
A 2.x user gets data only with one feed per route, its address ending in ``/market`` or ``/public``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cryptofeed")

pytestmark = pytest.mark.clients

PROBE = Path(__file__).with_name("cryptofeed_probe.py")
FEED_SECONDS = 5.0
ROUTES_ITSELF = int(version("cryptofeed").split(".")[0]) >= 3


def run_feeds(simulator: dict[str, Any], *feeds: str) -> dict[str, Any]:
    """Trades and book updates the probe's feeds (``CHANNELS@WS_ADDRESS``) counted in ``FEED_SECONDS``."""
    ca_file = simulator["ca_file"]
    env = {**os.environ, "SSL_CERT_FILE": ca_file, "REQUESTS_CA_BUNDLE": ca_file}
    command = [sys.executable, str(PROBE), simulator["rest_base"], str(FEED_SECONDS), *feeds]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=FEED_SECONDS + 60)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not ROUTES_ITSELF, reason="cryptofeed < 3 does not route USDⓈ-M streams")
def test_feed_at_the_base_address_receives_trades_and_book(tls_simulator: dict[str, Any]) -> None:
    counts = run_feeds(tls_simulator, f"trades,l2_book@{tls_simulator['ws_base']}")
    assert counts["trades"] > 0 and counts["books"] > 0, counts


@pytest.mark.skipif(ROUTES_ITSELF, reason="cryptofeed >= 3 routes USDⓈ-M streams itself")
def test_unrouted_feed_is_acknowledged_but_silent_as_on_binance(tls_simulator: dict[str, Any]) -> None:
    counts = run_feeds(tls_simulator, f"trades,l2_book@{tls_simulator['ws_base']}")
    assert counts["trades"] == 0 and counts["books"] == 0, counts


@pytest.mark.skipif(ROUTES_ITSELF, reason="cryptofeed >= 3 routes USDⓈ-M streams itself")
def test_one_feed_per_route_receives_trades_and_book(tls_simulator: dict[str, Any]) -> None:
    ws_base = tls_simulator["ws_base"]
    counts = run_feeds(tls_simulator, f"trades@{ws_base}/market", f"l2_book@{ws_base}/public")
    assert counts["trades"] > 0 and counts["books"] > 0, counts

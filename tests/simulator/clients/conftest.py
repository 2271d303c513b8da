"""Simulators for the third-party client tests: ``harvest simulate`` in its own process, because the synchronous
clients (ccxt, the SDK's REST, cryptofeed's symbol lookup, unicorn's threads) would block an in-process simulator's
event loop. One plain and one TLS simulator per test module.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.collector.harness import SimulatorProcess

SIMULATED_SYMBOLS = "BTCUSDT,ETHUSDT"
SIMULATED_RATE = 3.0
HISTORY_TRADES = 300
"""aggTrades a simulator has made before its tests start, so that id and time windows have something inside."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clients: third-party Binance clients against the simulator (own venv)")


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A plain ``ws://``/``http://`` USDⓈ-M simulator's ready file: ``ws_base``, ``rest_base``, ``admin_base``."""
    process = SimulatorProcess(tmp_path_factory.mktemp("simulator"), symbols=SIMULATED_SYMBOLS, rate=SIMULATED_RATE)
    yield from ready_simulator(process)


@pytest.fixture(scope="module")
def tls_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A ``wss://``/``https://`` simulator's ready file, with the ``ca_file`` a client trusts."""
    process = SimulatorProcess(
        tmp_path_factory.mktemp("tls-simulator"), symbols=SIMULATED_SYMBOLS, rate=SIMULATED_RATE, extra_args=("--tls",)
    )
    yield from ready_simulator(process)


def ready_simulator(process: SimulatorProcess) -> Iterator[dict[str, Any]]:
    """The process's ready file once it has a trade history; stops the process afterwards, also when it never got
    one."""
    try:
        wait_for_history(process.info)
        yield process.info
    finally:
        process.stop()


def wait_for_history(info: dict[str, Any]) -> None:
    """Wait until BTCUSDT has ``HISTORY_TRADES`` aggTrades."""
    url = f"{info['rest_base']}/fapi/v1/aggTrades?symbol=BTCUSDT&limit=1000"
    context = ssl.create_default_context(cafile=info["ca_file"]) if info.get("ca_file") else None
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            if len(json.loads(response.read())) >= HISTORY_TRADES:
                return
        assert time.monotonic() < deadline, f"fewer than {HISTORY_TRADES} aggTrades at {url} after 30 s"
        time.sleep(0.5)  # each call weighs 20 of the simulator's REST weight budget

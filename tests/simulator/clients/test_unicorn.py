"""unicorn-binance-websocket-api against the simulator, configured only through its public options
(``websocket_base_uri``, ``restful_base_uri``; for ``wss://`` the CA in ``SSL_CERT_FILE``). It picks the
``/market/`` or ``/public/`` route of each stream itself."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("unicorn_binance_websocket_api")

from unicorn_binance_websocket_api import BinanceWebSocketApiManager  # noqa: E402

pytestmark = pytest.mark.clients

STREAM_SECONDS = 4.0


@pytest.fixture(params=["simulator", "tls_simulator"])
def manager(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    info = request.getfixturevalue(request.param)
    if info.get("ca_file"):
        monkeypatch.setenv("SSL_CERT_FILE", info["ca_file"])
    client = BinanceWebSocketApiManager(
        exchange="binance.com-futures",
        websocket_base_uri=f"{info['ws_base']}/",
        restful_base_uri=info["rest_base"],
        warn_on_update=False,
        output_default="dict",
    )
    yield client
    client.stop_manager()


def drain(client: Any) -> list[Any]:
    frames = []
    while (frame := client.pop_stream_data_from_stream_buffer()) not in (False, None):
        frames.append(frame)
    return frames


def test_streams_and_a_later_subscription_receive_frames(manager: Any) -> None:
    trades = manager.create_stream(channels=["aggTrade"], markets=["btcusdt"], stream_label="trades")
    manager.create_stream(channels=["depth@100ms"], markets=["btcusdt"], stream_label="book")
    time.sleep(1.0)
    assert manager.subscribe_to_stream(trades, markets=["ethusdt"])
    time.sleep(STREAM_SECONDS)
    frames = drain(manager)
    per_stream = Counter(frame.get("stream") for frame in frames)
    for stream in ("btcusdt@aggTrade", "ethusdt@aggTrade", "btcusdt@depth@100ms"):
        assert per_stream[stream] > 0, f"no {stream} frame: {per_stream}"
    events = {frame["data"]["e"] for frame in frames if "stream" in frame}
    assert events == {"aggTrade", "depthUpdate"}
    replies = [frame for frame in frames if "stream" not in frame]
    assert replies and all(reply == {"result": None, "id": reply["id"]} for reply in replies)

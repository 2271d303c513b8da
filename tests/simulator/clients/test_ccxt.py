"""ccxt's ``binanceusdm`` against the simulator, configured only through its public ``urls`` option."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

ccxt = pytest.importorskip("ccxt")

pytestmark = pytest.mark.clients

SYMBOL = "BTC/USDT:USDT"


@pytest.fixture
def exchange(simulator: dict[str, Any]) -> Iterator[Any]:
    """``binanceusdm`` with every USDⓈ-M public REST root on the simulator (the others stay unused)."""
    base = simulator["rest_base"]
    api = {
        "fapiPublic": f"{base}/fapi/v1",
        "fapiPublicV2": f"{base}/fapi/v2",
        "fapiPublicV3": f"{base}/fapi/v3",
        "fapiData": f"{base}/futures/data",
    }
    client = ccxt.binanceusdm({"urls": {"api": api}})
    yield client
    client.close()


def test_load_markets_fills_precision_and_limits(exchange: Any) -> None:
    markets = exchange.load_markets()
    assert {"BTC/USDT:USDT", "ETH/USDT:USDT"} <= set(markets)
    market = markets[SYMBOL]
    assert market["active"] and market["linear"] and market["swap"]
    limits = market["limits"]
    assert None not in (limits["amount"]["min"], limits["amount"]["max"], limits["price"]["min"], limits["cost"]["min"])
    assert None not in (market["precision"]["amount"], market["precision"]["price"])


def test_fetch_order_book_has_both_sides(exchange: Any) -> None:
    book = exchange.fetch_order_book(SYMBOL, limit=10)
    assert book["nonce"] and book["timestamp"]
    assert 0 < len(book["bids"]) <= 10 and 0 < len(book["asks"]) <= 10
    assert book["bids"][0][0] < book["asks"][0][0]


def test_fetch_trades_since_starts_at_since_not_at_the_latest(exchange: Any) -> None:
    """ccxt sends ``startTime=since`` and ``endTime=since+3600000`` (exactly one hour) to ``/fapi/v1/aggTrades``."""
    latest = exchange.fetch_trades(SYMBOL, limit=1000)
    since = latest[100]["timestamp"]
    trades = exchange.fetch_trades(SYMBOL, since=since, limit=50)
    assert trades
    assert all(trade["timestamp"] >= since for trade in trades)
    assert trades[0]["timestamp"] == since
    assert trades[-1]["timestamp"] < latest[-1]["timestamp"], "got the latest trades, not those from since on"


def test_fetch_ohlcv_returns_one_minute_candles(exchange: Any) -> None:
    candles = exchange.fetch_ohlcv(SYMBOL, "1m", limit=3)
    assert candles
    for open_ms, open_, high, low, close, volume in candles:
        assert open_ms % 60_000 == 0
        assert low <= min(open_, close) and max(open_, close) <= high and volume >= 0


def test_fetch_ticker_has_last_price_and_24h_range(exchange: Any) -> None:
    ticker = exchange.fetch_ticker(SYMBOL)
    assert ticker["symbol"] == SYMBOL and ticker["timestamp"]
    assert ticker["low"] <= ticker["last"] <= ticker["high"]
    assert ticker["baseVolume"] > 0


def test_rest_calls_reuse_one_keep_alive_connection(exchange: Any, simulator: dict[str, Any]) -> None:
    """ccxt's requests session keeps its connection open: a run of calls costs one new connection, not one each."""
    before = admin_accounting(simulator)["rest"]
    exchange.fetch_order_book(SYMBOL, limit=5)
    exchange.fetch_trades(SYMBOL, limit=10)
    exchange.fetch_ohlcv(SYMBOL, "1m", limit=2)
    exchange.fetch_order_book(SYMBOL, limit=5)
    after = admin_accounting(simulator)["rest"]
    assert after["requests"] - before["requests"] >= 4
    assert after["connections"] - before["connections"] <= 1


def admin_accounting(simulator: dict[str, Any]) -> dict[str, Any]:
    with urllib.request.urlopen(f"{simulator['admin_base']}/admin/accounting", timeout=5) as response:
        return json.loads(response.read())

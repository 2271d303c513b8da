"""Binance's official USDⓈ-M futures SDK (``binance-sdk-derivatives-trading-usds-futures``) against the simulator,
configured only through its public configuration objects: ``base_path`` (REST) and ``stream_url`` (streams)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import pytest

pytest.importorskip("binance_sdk_derivatives_trading_usds_futures")

from binance_common.configuration import ConfigurationRestAPI, ConfigurationWebSocketStreams  # noqa: E402
from binance_sdk_derivatives_trading_usds_futures.derivatives_trading_usds_futures import (  # noqa: E402
    DerivativesTradingUsdsFutures,
)
from binance_sdk_derivatives_trading_usds_futures.websocket_streams.models import (  # noqa: E402
    AggregateTradeStreamsResponse,
    DiffBookDepthStreamsResponse,
    IndividualSymbolBookTickerStreamsResponse,
    KlineCandlestickStreamsResponse,
    MarkPriceStreamResponse,
)

pytestmark = pytest.mark.clients

SYMBOL = "BTCUSDT"
STREAM_SECONDS = 4.0


def rest_api(simulator: dict[str, Any]) -> Any:
    config = ConfigurationRestAPI(base_path=simulator["rest_base"])
    return DerivativesTradingUsdsFutures(config_rest_api=config).rest_api


def streams_client(simulator: dict[str, Any]) -> Any:
    """The streams client; for ``wss://`` it trusts the simulator's CA through ``https_agent``."""
    context = ssl.create_default_context(cafile=simulator["ca_file"]) if simulator.get("ca_file") else None
    config = ConfigurationWebSocketStreams(stream_url=simulator["ws_base"], reconnect_attempts=1, https_agent=context)
    return DerivativesTradingUsdsFutures(config_ws_streams=config).websocket_streams


def test_exchange_information_lists_the_simulated_symbols_with_their_filters(simulator: dict[str, Any]) -> None:
    info = rest_api(simulator).exchange_information().data()
    by_symbol = {entry.symbol: entry for entry in info.symbols}
    assert {"BTCUSDT", "ETHUSDT"} <= set(by_symbol)
    filter_types = {f.filter_type for f in by_symbol[SYMBOL].filters}
    assert {"PRICE_FILTER", "LOT_SIZE", "MIN_NOTIONAL"} <= filter_types
    assert info.rate_limits


def test_order_book_has_both_sides_and_an_update_id(simulator: dict[str, Any]) -> None:
    book = rest_api(simulator).order_book(SYMBOL, limit=10).data()
    assert book.last_update_id > 0
    assert 0 < len(book.bids) <= 10 and 0 < len(book.asks) <= 10
    assert float(book.bids[0][0]) < float(book.asks[0][0])


def test_agg_trades_from_an_id_start_at_that_id(simulator: dict[str, Any]) -> None:
    api = rest_api(simulator)
    latest = api.compressed_aggregate_trades_list(SYMBOL, limit=100).data()
    from_id = latest[0].a
    trades = api.compressed_aggregate_trades_list(SYMBOL, from_id=from_id, limit=20).data()
    assert [trade.a for trade in trades] == list(range(from_id, from_id + 20))


def test_agg_trades_of_a_time_window_lie_inside_it(simulator: dict[str, Any]) -> None:
    api = rest_api(simulator)
    latest = api.compressed_aggregate_trades_list(SYMBOL, limit=200).data()
    start_ms, end_ms = latest[20].T, latest[-20].T
    assert start_ms < end_ms, "the simulator traded in under one millisecond; raise --rate"
    trades = api.compressed_aggregate_trades_list(SYMBOL, start_time=start_ms, end_time=end_ms).data()
    assert trades, f"no aggTrades between startTime={start_ms} and endTime={end_ms}"
    assert all(start_ms <= trade.T <= end_ms for trade in trades)
    assert trades[0].a <= latest[20].a and trades[-1].a >= latest[-20].a


def test_klines_are_one_minute_candles_with_consistent_prices(simulator: dict[str, Any]) -> None:
    candles = rest_api(simulator).kline_candlestick_data(SYMBOL, "1m", limit=3).data()
    assert candles
    for candle in candles:
        open_ms, high, low, close_ms = candle[0], float(candle[2]), float(candle[3]), candle[6]
        assert close_ms - open_ms == 59_999
        assert low <= float(candle[1]) <= high and low <= float(candle[4]) <= high


@pytest.mark.parametrize("simulator_kind", ["simulator", "tls_simulator"])
def test_create_connection_opens_the_market_public_and_private_routes(
    simulator_kind: str, request: pytest.FixtureRequest
) -> None:
    simulator = request.getfixturevalue(simulator_kind)

    async def scenario() -> set[str | None]:
        streams = streams_client(simulator)
        await streams.create_connection()
        try:
            return {connection.url_path for connection in streams.connections if not connection.websocket.closed}
        finally:
            await streams.close_connection()

    assert asyncio.run(scenario()) == {"market", "public", "private"}


def test_stream_frames_validate_against_the_sdk_models(
    simulator: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Each frame is parsed into the SDK's pydantic model before the callback sees it; a frame that does not
    validate is logged as ``Error in callback for key ...`` and never reaches the callback."""
    symbol = SYMBOL.lower()

    async def scenario() -> dict[str, list[Any]]:
        streams = streams_client(simulator)
        await streams.create_connection()
        received: dict[str, list[Any]] = {}
        subscriptions = {
            "aggTrade": streams.aggregate_trade_streams(symbol=symbol),
            "depth": streams.diff_book_depth_streams(symbol=symbol, update_speed="100ms"),
            "bookTicker": streams.individual_symbol_book_ticker_streams(symbol=symbol),
            "markPrice": streams.mark_price_stream(symbol=symbol, update_speed="1s"),
            "kline": streams.kline_candlestick_streams(symbol=symbol, interval="1m"),
        }
        try:
            for name, subscribing in subscriptions.items():
                handle = await subscribing
                handle.on("message", received.setdefault(name, []).append)
            await asyncio.sleep(STREAM_SECONDS)
        finally:
            await streams.close_connection()
        return received

    with caplog.at_level(logging.ERROR):
        received = asyncio.run(scenario())
    models = {
        "aggTrade": AggregateTradeStreamsResponse,
        "depth": DiffBookDepthStreamsResponse,
        "bookTicker": IndividualSymbolBookTickerStreamsResponse,
        "markPrice": MarkPriceStreamResponse,
        "kline": KlineCandlestickStreamsResponse,
    }
    for name, model in models.items():
        assert received[name], f"no {name} frame in {STREAM_SECONDS} s"
        assert all(isinstance(frame, model) for frame in received[name])
    assert all(frame.s == SYMBOL and frame.E for frames in received.values() for frame in frames)
    assert not [record.getMessage() for record in caplog.records if "Error in callback" in record.getMessage()]

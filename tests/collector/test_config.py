import pytest

from harvest_pipeline.collector.config import CollectorConfig, config_with_overrides


def test_symbols_are_validated():
    with pytest.raises(ValueError, match="btcusdt"):
        CollectorConfig(symbols=("btcusdt",))
    with pytest.raises(ValueError, match="invalid"):
        CollectorConfig(symbols=("BTC-USDT",))


def test_streams_are_routed_by_kind_by_default():
    grouped = CollectorConfig(symbols=("BTCUSDT", "ETHUSDT")).streams_by_route()
    assert grouped == {
        "market": ["btcusdt@aggTrade", "ethusdt@aggTrade"],
        "public": ["btcusdt@depth@100ms", "ethusdt@depth@100ms", "btcusdt@bookTicker", "ethusdt@bookTicker"],
    }


def test_environment_then_flags_override_defaults():
    config = CollectorConfig.from_env({"HARVEST_SYMBOLS": "ETHUSDT,SOLUSDT", "HARVEST_WATCHDOG_S": "5"})
    assert config.symbols == ("ETHUSDT", "SOLUSDT") and config.watchdog_s == 5.0
    config = config_with_overrides(config, {"watchdog_s": "7.5", "routes": "aggTrade=public", "symbols": None})
    assert (
        config.watchdog_s == 7.5 and config.routes["aggTrade"] == "public" and config.routes["bookTicker"] == "public"
    )
    with pytest.raises(ValueError, match="segment_max_bytes"):
        config_with_overrides(config, {"segment_max_bytes": "lots"})

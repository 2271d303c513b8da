import pytest

from harvest_pipeline.collector.config import CollectorConfig, config_with_overrides
from harvest_pipeline.collector.service import CollectorService
from harvest_pipeline.paths import DataPaths


def test_symbols_are_validated():
    with pytest.raises(ValueError, match="btcusdt"):
        CollectorConfig(symbols=("btcusdt",))
    with pytest.raises(ValueError, match="invalid"):
        CollectorConfig(symbols=("BTC-USDT",))


def test_streams_are_routed_by_kind_by_default():
    grouped = CollectorConfig(symbols=("BTCUSDT", "ETHUSDT")).streams_by_route()
    market = ["aggTrade", "markPrice@1s", "forceOrder", "kline_1m"]
    assert grouped == {
        "market": [f"{symbol}@{kind}" for symbol in ("btcusdt", "ethusdt") for kind in market],
        "public": ["btcusdt@depth@100ms", "btcusdt@bookTicker", "ethusdt@depth@100ms", "ethusdt@bookTicker"],
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


def test_streams_are_sharded_by_route_at_most_200_per_connection(tmp_path):
    symbols = tuple(f"S{n:03d}USDT" for n in range(250))
    service = CollectorService(CollectorConfig(symbols=symbols), DataPaths.from_root(tmp_path))
    sizes = sorted((shard.route, len(shard.streams)) for shard in service.shards)
    assert sizes == [("market", 200)] * 5 + [("public", 100), ("public", 200), ("public", 200)]
    for shard in service.shards:
        kinds = {s.partition("@")[2] for s in shard.streams}
        expected = {"aggTrade", "markPrice@1s", "forceOrder", "kline_1m"} if shard.route == "market" else None
        assert kinds == (expected or {"depth@100ms", "bookTicker"}), "every connection mixes watched and quiet kinds"

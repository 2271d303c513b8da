"""Which streams the collector records by default, on which route, and how an operator chooses them."""

import argparse

import pytest

from harvest_pipeline.collector import command
from harvest_pipeline.collector.config import (
    DEFAULT_ROUTES,
    DEFAULT_STREAM_KINDS,
    CollectorConfig,
    config_with_overrides,
    is_quiet_stream,
)
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.settings import SETTINGS_ENV_NAMES, env_name
from harvest_pipeline.up import child_environment


def test_the_new_market_kinds_are_routed_on_market_and_trade_is_not_recorded_by_default():
    assert {
        kind: DEFAULT_ROUTES[kind] for kind in ("trade", "markPrice@1s", "forceOrder", "kline_1m")
    } == dict.fromkeys(("trade", "markPrice@1s", "forceOrder", "kline_1m"), "market")
    config = CollectorConfig()
    assert config.stream_kinds == DEFAULT_STREAM_KINDS
    assert set(config.stream_kinds) == {
        "aggTrade",
        "depth@100ms",
        "bookTicker",
        "markPrice@1s",
        "forceOrder",
        "kline_1m",
    }
    assert "trade" not in config.stream_kinds


def test_quiet_streams_are_the_liquidation_streams_only():
    names = CollectorConfig(symbols=("BTCUSDT", "ETHUSDT")).streams_by_route()["market"]
    assert [name for name in names if is_quiet_stream(name)] == ["btcusdt@forceOrder", "ethusdt@forceOrder"]


def test_stream_kinds_come_from_the_environment_or_the_collect_flag():
    config = CollectorConfig.from_env({"HARVEST_STREAM_KINDS": "aggTrade,trade,forceOrder"})
    assert config.stream_kinds == ("aggTrade", "trade", "forceOrder")
    assert config.streams_by_route() == {"market": ["btcusdt@aggTrade", "btcusdt@trade", "btcusdt@forceOrder"]}

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["collect", "--stream-kinds", "trade,kline_1m", "--open-interest-interval-s", "0"])
    tuning = {name: getattr(args, name) for name in ("stream_kinds", "open_interest_interval_s")}
    config = config_with_overrides(config, tuning)
    assert config.stream_kinds == ("trade", "kline_1m") and config.open_interest_interval_s == 0.0
    with pytest.raises(ValueError, match="kline_5m"):
        config_with_overrides(config, {"stream_kinds": "kline_5m"})
    assert config_with_overrides(config, {"stream_kinds": "kline_5m", "routes": "kline_5m=market"}).streams_by_route()


def test_harvest_up_hands_the_collector_its_stream_kinds_from_the_environment(tmp_path):
    """``up`` strips installation variables from its children (the settings file wins); collector tuning such as
    ``HARVEST_STREAM_KINDS`` passes through to ``harvest collect`` unchanged."""
    name = env_name("stream_kinds")
    assert name == "HARVEST_STREAM_KINDS" and name not in SETTINGS_ENV_NAMES
    env = child_environment(tmp_path / "settings.json", DataPaths.from_root(tmp_path))
    assert name not in env and env_name("open_interest_interval_s") not in env


def test_open_interest_settings_are_validated():
    with pytest.raises(ValueError, match="open_interest_interval_s"):
        CollectorConfig(open_interest_interval_s=-1)
    with pytest.raises(ValueError, match="open_interest_weight_share"):
        CollectorConfig(open_interest_weight_share=0)
    assert CollectorConfig.from_env({"HARVEST_OPEN_INTEREST_INTERVAL_S": "15"}).open_interest_interval_s == 15.0

"""One settings object for the installation: one default per setting, flag > environment > settings file > default,
validated once with errors that name the setting and where its value came from, and read the same way by the
collector, the Dagster resource and the ``symbol_partitions`` sensor (which registers the configured symbols as
partitions of the instance)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from assets.resources import HarvestStorage
from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.settings import SETTINGS_FILE_ENV, InstallationSettings, load_settings
from harvest_pipeline.symbol_partitions import registered_symbols
from sensors.symbols import symbol_partitions

REPO = Path(__file__).resolve().parents[2]


def write_toml(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    file = write_toml(tmp_path / "s.toml", 'symbols = ["ETHUSDT"]\nui_port = 3100\nmetrics_port = 9200\n')
    env = {SETTINGS_FILE_ENV: file, "HARVEST_UI_PORT": "3200", "HARVEST_METRICS_PORT": "9300"}
    settings = load_settings({"metrics_port": 9400, "symbols": None}, env)
    assert settings.symbols == ("ETHUSDT",)  # file over default (a None flag is "not given")
    assert settings.ui_port == 3200  # environment over file
    assert settings.metrics_port == 9400  # flag over environment
    assert settings.ws_base == InstallationSettings().ws_base == "wss://fstream.binance.com"  # the default


def test_every_component_shares_the_one_symbols_default(tmp_path: Path, monkeypatch) -> None:
    for name in ("HARVEST_SYMBOLS", SETTINGS_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    default = InstallationSettings().symbols
    assert CollectorConfig().symbols == default == CollectorConfig.from_env({}).symbols
    assert load_settings().symbols == default
    assert tuple(registered_symbols_after_a_tick(HarvestStorage(data_root=str(tmp_path)))) == default
    up_help = subprocess.run(
        [sys.executable, "-m", "harvest_pipeline.cli", "collect", "--help"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert f"default {','.join(default)}" in " ".join(up_help.split())


def registered_symbols_after_a_tick(storage: HarvestStorage) -> list[str]:
    """The symbol partitions of a fresh instance after one tick of the sensor that registers the configured ones."""
    with dg.instance_for_test() as instance:
        symbol_partitions(dg.build_sensor_context(instance=instance, resources={"storage": storage}))
        return registered_symbols(instance)


def test_a_settings_file_is_read_by_the_collector_the_partitions_and_the_resource(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data"
    file = tmp_path / "settings.json"
    json.dump({"symbols": ["SOLUSDT", "BTCUSDT"], "data_root": str(data), "parquet_dir": str(tmp_path / "big"),
               "ws_base": "ws://127.0.0.1:1", "segment_max_age_s": 5}, file.open("w"))  # fmt: skip
    monkeypatch.setenv(SETTINGS_FILE_ENV, str(file))
    for name in ("HARVEST_SYMBOLS", "HARVEST_DATA_ROOT", "HARVEST_PARQUET_DIR", "HARVEST_WS_BASE", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    config = CollectorConfig.from_env({SETTINGS_FILE_ENV: str(file), "HARVEST_WATCHDOG_S": "7"})
    assert (config.symbols, config.ws_base, config.segment_max_age_s) == (("SOLUSDT", "BTCUSDT"), "ws://127.0.0.1:1", 5)
    assert config.watchdog_s == 7.0  # the collector's own tuning still comes from its variables
    assert load_settings().symbols == ("SOLUSDT", "BTCUSDT")
    assert sorted(registered_symbols_after_a_tick(HarvestStorage())) == ["BTCUSDT", "SOLUSDT"]
    paths = HarvestStorage().paths()
    assert paths == DataPaths.from_env()
    assert (paths.root, paths.parquet, paths.segments) == (data, tmp_path / "big", data / "segments")
    assert HarvestStorage(data_root=str(tmp_path / "other")).paths().root == tmp_path / "other"  # explicit wins


def test_the_resource_backs_deployment_fields_with_env_vars_resolved_by_dagster(tmp_path: Path, monkeypatch) -> None:
    file = tmp_path / "settings.toml"
    file.write_text(f'data_root = "{tmp_path / "from-file"}"\n')
    monkeypatch.setenv(SETTINGS_FILE_ENV, str(file))
    monkeypatch.setenv("HARVEST_PARQUET_DIR", str(tmp_path / "pq"))
    monkeypatch.delenv("HARVEST_DATA_ROOT", raising=False)
    storage = HarvestStorage.from_deployment()

    @dg.asset
    def where(storage: HarvestStorage) -> dict[str, str]:
        paths = storage.paths()
        return {"file": str(storage.settings_file), "root": str(paths.root), "parquet": str(paths.parquet)}

    assert isinstance(storage.settings_file, dg.EnvVar) and storage.settings_file == SETTINGS_FILE_ENV
    assert isinstance(storage.parquet_dir, dg.EnvVar) and storage.data_root is None  # unset: from the settings file
    result = dg.materialize([where], resources={"storage": storage})
    assert result.output_for_node("where") == {
        "file": str(file), "root": str(tmp_path / "from-file"), "parquet": str(tmp_path / "pq"),
    }  # fmt: skip


@pytest.mark.parametrize(
    "env, message",
    [
        ({"HARVEST_SYMBOLS": "BTC-USDT"}, "invalid harvest settings \\(environment\\).*BTC-USDT"),
        ({"HARVEST_UI_PORT": "http"}, "ui_port='http'.*HARVEST_UI_PORT.*not a valid int"),
        ({"HARVEST_UI_PORT": "70000"}, "ui_port must be a TCP port 1-65535, not 70000"),
        ({"HARVEST_WS_BASE": "https://fstream.binance.com"}, "ws_base must be a ws/wss:// URL"),
        ({"HARVEST_START_DATE": "yesterday"}, "start_date must be a date"),
        ({"HARVEST_UI_HOST": "0.0.0.0"}, "not a loopback address.*--ui-allow-remote"),
        ({"HARVEST_DAGSTER_STORAGE": "postgresql://h/db"}, "psycopg2"),
        ({"HARVEST_UI_ALLOW_REMOTE": "perhaps"}, "ui_allow_remote='perhaps'"),
    ],
)
def test_invalid_settings_fail_once_naming_the_setting_and_its_source(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(environ=env)


def test_a_settings_file_typo_is_an_error_not_a_silent_default(tmp_path: Path) -> None:
    file = write_toml(tmp_path / "s.toml", 'symbol = "ETHUSDT"\n')
    with pytest.raises(ValueError, match="unknown setting.*'symbol'"):
        load_settings(environ={SETTINGS_FILE_ENV: file})
    with pytest.raises(ValueError, match="cannot read settings file"):
        load_settings(environ={SETTINGS_FILE_ENV: str(tmp_path / "missing.toml")})


def test_a_remote_ui_is_allowed_only_when_asked_for_explicitly() -> None:
    assert load_settings({"ui_host": "0.0.0.0", "ui_allow_remote": True}, {}).ui_host == "0.0.0.0"
    assert load_settings({}, {"HARVEST_UI_HOST": "::1"}).ui_host == "::1"
    assert load_settings({}, {"HARVEST_UI_HOST": "localhost"}).ui_host == "localhost"


def test_the_shipped_example_settings_file_is_valid() -> None:
    settings = load_settings(environ={SETTINGS_FILE_ENV: str(REPO / "deploy" / "harvest-settings.example.toml")})
    assert settings.ui_host == "127.0.0.1" and settings.data_root == "/var/lib/harvest"

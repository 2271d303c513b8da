"""`harvest up` never picks its data source silently (unreachable exchange -> simulator, and the banner says why), and
hands its children one resolved settings file instead of one environment string per setting."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import sqlalchemy

from harvest_pipeline.cli import build_parser
from harvest_pipeline.dagster_home import configured_postgres
from harvest_pipeline.settings import SETTINGS_FILE_ENV, load_settings
from harvest_pipeline.up import banner, free_port, plan_up
from tests.ops.postgres_server import running_postgres


def parse_up(*flags: str) -> object:
    return build_parser().parse_args(["up", *flags])


def test_unreachable_exchange_falls_back_to_the_simulator_and_says_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HARVEST_REST_BASE", f"http://127.0.0.1:{free_port()}")
    plan = plan_up(parse_up("--data", str(tmp_path)))
    assert plan.source == "simulator"
    assert [child.name for child in plan.children] == ["simulator", "dagster-webserver", "dagster-daemon", "collector"]
    text = banner(plan)
    assert "SOURCE: built-in simulator" in text and "is not reachable" in text and "--live" in text
    assert (tmp_path / "dagster_home" / "dagster.yaml").exists()


def test_reachable_exchange_is_recorded_live_without_a_simulator(tmp_path: Path, monkeypatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        monkeypatch.setenv("HARVEST_REST_BASE", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("HARVEST_WS_BASE", f"ws://127.0.0.1:{port}")
        plan = plan_up(parse_up("--data", str(tmp_path)))
    assert plan.source == "exchange" and plan.ws_base == f"ws://127.0.0.1:{port}"
    assert "simulator" not in [child.name for child in plan.children]
    collector = next(child for child in plan.children if child.name == "collector")
    settings_file = collector.env[SETTINGS_FILE_ENV]
    assert settings_file is not None
    assert load_settings(environ={SETTINGS_FILE_ENV: settings_file}).ws_base == f"ws://127.0.0.1:{port}"
    assert "is reachable" in banner(plan)


@pytest.mark.parametrize("flag, source", [("--simulate", "simulator"), ("--live", "exchange")])
def test_explicit_source_flags_win(tmp_path: Path, monkeypatch, flag: str, source: str) -> None:
    monkeypatch.setenv("HARVEST_REST_BASE", f"http://127.0.0.1:{free_port()}")
    plan = plan_up(parse_up("--data", str(tmp_path), flag))
    assert plan.source == source and f"{flag} was given" in banner(plan)


def test_children_get_one_settings_file_that_wins_over_stale_environment_strings(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HARVEST_SYMBOLS", "SOLUSDT")
    monkeypatch.setenv("HARVEST_SEGMENT_MAX_AGE_S", "45")
    plan = plan_up(parse_up("--data", str(tmp_path), "--simulate", "--symbols", "ETHUSDT", "--metrics-port", "9200"))
    assert plan.settings_file == tmp_path / "harvest-settings.json"
    for child in plan.children:
        handed = {name: value for name, value in child.env.items() if value is not None}
        assert handed == {SETTINGS_FILE_ENV: str(plan.settings_file), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
        assert child.env["HARVEST_SYMBOLS"] is None and child.env["HARVEST_DATA_ROOT"] is None  # removed, not inherited
    child_view = load_settings(environ={SETTINGS_FILE_ENV: str(plan.settings_file)})
    assert child_view.symbols == ("ETHUSDT",)  # flag over environment, resolved once
    assert child_view.segment_max_age_s == 45.0 and child_view.metrics_port == 9200
    assert child_view.ws_base == plan.ws_base and child_view.ws_base.startswith("ws://127.0.0.1:")
    assert child_view.data_root == str(tmp_path)
    simulator = next(child for child in plan.children if child.name == "simulator")
    assert simulator.argv[simulator.argv.index("--symbols") + 1] == "ETHUSDT"


def test_a_non_loopback_ui_host_is_refused_without_the_explicit_flag(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a loopback address.*--ui-allow-remote"):
        plan_up(parse_up("--data", str(tmp_path), "--simulate", "--ui-host", "0.0.0.0"))
    assert not (tmp_path / "harvest-settings.json").exists()
    plan = plan_up(parse_up("--data", str(tmp_path), "--simulate", "--ui-host", "0.0.0.0", "--ui-allow-remote"))
    webserver = next(child for child in plan.children if child.name == "dagster-webserver")
    assert webserver.argv[webserver.argv.index("-h") + 1] == "0.0.0.0"
    assert "WITHOUT authentication" in banner(plan)


def test_dagster_storage_flag_puts_the_instance_on_postgres(tmp_path: Path) -> None:
    with running_postgres() as server:
        url = server.create_database("harvest_up_plan")
        plan = plan_up(parse_up("--data", str(tmp_path / "data"), "--simulate", "--dagster-storage", url))
        configured = configured_postgres(plan.paths.dagster_home / "dagster.yaml")
        assert configured is not None and configured.database == "harvest_up_plan"
        assert load_settings(environ={SETTINGS_FILE_ENV: str(plan.settings_file)}).dagster_storage == url
        assert plan.settings_file.stat().st_mode & 0o077 == 0, "the file holds the storage password"
        engine = sqlalchemy.create_engine(url)
        try:
            tables = sqlalchemy.inspect(engine).get_table_names()
        finally:
            engine.dispose()
        assert "runs" in tables, "ensure_dagster_home created the run storage in PostgreSQL"

"""`harvest up` never picks its data source silently: unreachable exchange -> simulator, and the banner says why."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from harvest_pipeline.cli import build_parser
from harvest_pipeline.up import banner, free_port, plan_up


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
    assert collector.env["HARVEST_WS_BASE"] == f"ws://127.0.0.1:{port}"
    assert "is reachable" in banner(plan)


@pytest.mark.parametrize("flag, source", [("--simulate", "simulator"), ("--live", "exchange")])
def test_explicit_source_flags_win(tmp_path: Path, monkeypatch, flag: str, source: str) -> None:
    monkeypatch.setenv("HARVEST_REST_BASE", f"http://127.0.0.1:{free_port()}")
    plan = plan_up(parse_up("--data", str(tmp_path), flag))
    assert plan.source == source and f"{flag} was given" in banner(plan)

"""``harvest simulate`` as its own process: ready file, faults from the command line, accounting on SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect

from harvest_pipeline.simulator.command import config_from_args, register
from tests.simulator.ws_clients import collect_then_unsubscribe, http_get, run

REPO_ROOT = Path(__file__).resolve().parents[2]


def start_simulator(*args: str) -> subprocess.Popen[bytes]:
    """``python -m harvest_pipeline.cli simulate ...`` from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "harvest_pipeline.cli", "simulate", *args]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline, f"{path} not written within {timeout_s} s"
        time.sleep(0.05)
    return orjson.loads(path.read_bytes())


def test_simulate_writes_ready_file_applies_cli_faults_and_writes_accounting_on_sigterm(tmp_path: Path) -> None:
    ready, accounting_file = tmp_path / "ready.json", tmp_path / "accounting.json"
    fault = '{"fault":"repeat","stream":"btcusdt@aggTrade","count":2}'
    process = start_simulator(
        "--symbols", "BTCUSDT", "--rate", "3", "--ready-file", str(ready),
        "--accounting-file", str(accounting_file), "--fault", fault,
    )  # fmt: skip
    try:
        bases = wait_for_file(ready, process)
        assert bases["pid"] == process.pid

        async def client() -> tuple[list[str], int]:
            async with connect(f"{bases['ws_base']}/market/ws/btcusdt@aggTrade") as ws:
                frames = await collect_then_unsubscribe(ws, 0.6, ["btcusdt@aggTrade"])
            status, _, _ = await http_get(f"{bases['rest_base']}/fapi/v1/exchangeInfo")
            return frames, status

        frames, status = run(client())
        assert status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    accounting = orjson.loads(accounting_file.read_bytes())
    tally = accounting["streams"]["btcusdt@aggTrade"]
    assert tally["frames"] + tally["repeated"] == len(frames) and tally["repeated"] == 2
    assert tally["last_id"] == orjson.loads(frames[-1])["a"]
    assert accounting["rest"]["requests"] == 1
    assert accounting["trades"]["BTCUSDT"]["last_id"] >= tally["last_id"]


def test_simulate_rejects_a_bad_fault_with_a_clear_message() -> None:
    process = start_simulator("--fault", '{"fault":"burst"}')
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert b"needs parameter 'seconds'" in stderr


def test_agg_trade_horizon_flag_reaches_the_settings() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert config_from_args(parser.parse_args(["simulate", "--agg-trade-horizon-s", "2.5"])).agg_trade_horizon_s == 2.5
    assert config_from_args(parser.parse_args(["simulate"])).agg_trade_horizon_s is None
    with pytest.raises(ValueError, match="agg_trade_horizon_s must be > 0"):
        config_from_args(parser.parse_args(["simulate", "--agg-trade-horizon-s", "0"]))

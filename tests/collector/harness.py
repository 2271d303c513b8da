"""Run a collector against a simulator, in-process (fault scenarios) or as real processes (kill -9, SIGTERM)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harvest_pipeline.collector.config import CollectorConfig, env_name
from harvest_pipeline.collector.service import CollectorService
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import OPEN_SUFFIX, list_sealed_segments
from harvest_pipeline.simulator import Simulator, SimulatorConfig, running_simulator
from tests.collector.sealed import load_sealed_records

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST_SETTINGS: dict[str, Any] = {
    "collector_id": "t1",
    "metrics_port": 0,
    "segment_max_age_s": 1.0,
    "fsync_interval_s": 0.2,
    "watchdog_s": 1.0,
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.5,
    "connect_stagger_s": 0.0,
    "rotation_overlap_s": 1.0,
    "shutdown_deadline_s": 5.0,
    "snapshot_limit": 100,
    "open_interest_interval_s": 0.0,  # its REST requests would race the REST faults of other tests; on where tested
}
SCENARIO_SETTINGS: dict[str, Any] = {**FAST_SETTINGS, "stream_kinds": ("aggTrade", "depth@100ms", "bookTicker")}
"""What ``collect_in_process`` and ``CollectorProcess`` run with unless told otherwise: the kinds the fault scenarios
are about. markPrice@1s (1 Hz) would trip their 1 s watchdog now and then; the other default kinds are recorded in
test_new_streams.py and test_quiet_streams.py, with a watchdog that suits them."""

Scenario = Callable[[Simulator, CollectorService], Awaitable[None]]


def collect_in_process(
    tmp_path: Path,
    scenario: Scenario,
    symbols: tuple[str, ...] = ("BTCUSDT",),
    rate: float = 1.0,
    clock: Callable[[], int] = time.time_ns,
    simulator_settings: dict[str, Any] | None = None,
    simulator_symbols: tuple[str, ...] | None = None,
    **settings: Any,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run ``scenario`` while a collector records from a simulator; stop the simulator first (so every frame it sent
    was read), then the collector. Returns the sealed records and the simulator's final accounting. The simulator
    trades ``symbols`` unless ``simulator_symbols`` says otherwise (the collector's may be selectors)."""

    async def main() -> dict[str, Any]:
        simulator_config = SimulatorConfig(
            symbols=simulator_symbols or symbols, seed=3, rate=rate, **(simulator_settings or {})
        )
        async with running_simulator(simulator_config) as sim:
            config = CollectorConfig(
                symbols=symbols, ws_base=sim.ws_base, rest_base=sim.rest_base, **{**SCENARIO_SETTINGS, **settings}
            )
            service = CollectorService(config, DataPaths.from_root(tmp_path / "data"), clock=clock)
            stop = asyncio.Event()
            collector = asyncio.create_task(service.run(stop))
            await scenario(sim, service)
        accounting = sim.accounting()
        await asyncio.sleep(0.2)
        stop.set()
        assert await collector == 0
        return accounting

    accounting = asyncio.run(main())
    return load_sealed_records(tmp_path / "data" / "segments" / "sealed"), accounting


def sent_per_stream(accounting: dict[str, Any]) -> dict[str, int]:
    """Frames the simulator sent per stream, counting injected bad frames and repeats."""
    return {name: s["frames"] + s["malformed"] + s["repeated"] for name, s in accounting["streams"].items()}


def sealed_markets(tmp_path: Path) -> dict[str, str]:
    """The market each sealed segment's sidecar names, by segment name (``collect_in_process``'s data root)."""
    sealed = list_sealed_segments(tmp_path / "data" / "segments" / "sealed")
    return {segment.name: segment.load_meta().market for segment in sealed}


def records_of(records: list[dict[str, Any]], kind: str, stream: str | None = None) -> list[dict[str, Any]]:
    """Records of one kind (and stream)."""
    return [r for r in records if r["k"] == kind and (stream is None or r.get("s") == stream)]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until ``predicate`` holds or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def read_json_file(path: Path, timeout: float = 20.0) -> dict[str, Any]:
    """A JSON file another process writes atomically, once it exists."""
    wait_for(path.exists, timeout, f"{path}")
    return json.loads(path.read_text())


class SimulatorProcess:
    """``harvest simulate`` in its own process."""

    def __init__(self, tmp_path: Path, symbols: str = "BTCUSDT", rate: float = 1.0, extra_args: tuple[str, ...] = ()):
        self.ready = tmp_path / "sim-ready.json"
        self.accounting_file = tmp_path / "sim-accounting.json"
        args = ["simulate", "--symbols", symbols, "--rate", str(rate), "--seed", "5", *extra_args]
        args += ["--ready-file", str(self.ready), "--accounting-file", str(self.accounting_file)]
        self.process = start_cli(args, tmp_path / "sim.log")
        self.info = read_json_file(self.ready)

    def fault(self, fault: dict[str, Any]) -> dict[str, Any]:
        """POST /admin/fault."""
        request = urllib.request.Request(
            f"{self.info['admin_base']}/admin/fault", json.dumps(fault).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def stop(self) -> dict[str, Any]:
        """SIGTERM, then the final accounting."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(10) == 0
        return json.loads(self.accounting_file.read_text())


class CollectorProcess:
    """``harvest collect`` in its own process, configured through HARVEST_* environment variables."""

    def __init__(self, tmp_path: Path, sim: SimulatorProcess, extra_env: dict[str, str] | None = None, **settings: Any):
        self.ready = tmp_path / "collector-ready.json"
        self.ready.unlink(missing_ok=True)
        values = {**SCENARIO_SETTINGS, "ws_base": sim.info["ws_base"], "rest_base": sim.info["rest_base"], **settings}
        values = {"data_root": str(tmp_path / "data"), **values, "ready_file": str(self.ready)}
        env = {env_name(key): ",".join(v) if isinstance(v, tuple) else str(v) for key, v in values.items()}
        self.process = start_cli(["collect"], tmp_path / "collector.log", {**env, **(extra_env or {})})
        self.info = read_json_file(self.ready)

    def health(self) -> tuple[int, dict[str, Any]]:
        """GET /healthz: status code and report."""
        try:
            with urllib.request.urlopen(f"{self.info['metrics_url']}/healthz", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """kill -9."""
        self.process.kill()
        self.process.wait(10)


@dataclass
class KillLoopResult:
    """What a kill -9 loop left behind, checked: every sealed segment matched its sidecar on reading."""

    cycles: int
    open_segments_at_kill: int
    recovered_records: int
    sealed_segments: int
    frames: int
    tail_loss_ns: list[int]
    holes: list[str]


def run_kill_loop(tmp_path: Path, cycles: int, rng: random.Random, max_delay_s: float = 0.6) -> KillLoopResult:
    """Start a collector, kill -9 it at a random moment after its first frames, repeat; then stop one cleanly.

    ``tail_loss_ns`` is, per killed process, the time from its last sealed record to the kill: what was lost can
    only be that tail. ``holes`` lists connections whose sealed sequence numbers are not 1..N (a loss mid-stream).
    """
    sim = SimulatorProcess(tmp_path)
    kills: dict[str, int] = {}
    open_at_kill = 0
    for _ in range(cycles):
        collector = CollectorProcess(tmp_path, sim, segment_max_age_s=0.4)
        wait_for(lambda c=collector: c.health()[1]["streams"]["btcusdt@aggTrade"]["frames"] > 0, 10, "first frames")
        time.sleep(rng.uniform(0.0, max_delay_s))
        kills[collector.info["boot_id"]] = time.time_ns()
        collector.kill()
        open_at_kill += bool(list((tmp_path / "data" / "segments" / "open" / "t1").glob(f"*{OPEN_SUFFIX}")))
    final = CollectorProcess(tmp_path, sim)
    time.sleep(0.3)
    assert final.terminate() == 0
    sim.stop()
    sealed_root = tmp_path / "data" / "segments" / "sealed"
    records = load_sealed_records(sealed_root)
    last_t: dict[str, int] = defaultdict(int)
    numbers: dict[str, list[int]] = defaultdict(list)
    for record in records:
        last_t[record["c"].split("-")[0]] = max(last_t[record["c"].split("-")[0]], record["t"])
        numbers[record["c"]].append(record["n"])
    return KillLoopResult(
        cycles=cycles,
        open_segments_at_kill=open_at_kill,
        recovered_records=len(records_of(records, "recovered")),
        sealed_segments=len(list_sealed_segments(sealed_root)),
        frames=len(records_of(records, "frame")),
        tail_loss_ns=[killed_at - last_t[boot] for boot, killed_at in kills.items()],
        holes=[conn for conn, seen in numbers.items() if sorted(seen) != list(range(1, len(seen) + 1))],
    )


def start_cli(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``python -m harvest_pipeline.cli ARGS`` from the repository root, logging to ``log_path``."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "harvest_pipeline.cli", *args], cwd=REPO_ROOT, env=full_env, stdout=log, stderr=log
        )

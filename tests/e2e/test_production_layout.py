"""The shipped systemd units, run the way systemd would: the collector runs on its own, so stopping and restarting
the Dagster daemon and webserver never stops capture, and compaction resumes when the daemon is back.

Each unit's ``EnvironmentFile``, ``WorkingDirectory`` and ``ExecStart`` are read from deploy/systemd; the install
prefix /opt/harvest is this checkout, /etc/harvest/harvest.env a copy of the shipped one whose settings file is the
shipped example pointed at a temporary data root and the built-in simulator. Stopping is SIGTERM to the unit's
process group (KillMode=control-group), then SIGKILL after TimeoutStopSec.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from harvest_pipeline import segments
from harvest_pipeline.up import free_port
from tests.collector.harness import SimulatorProcess
from tests.e2e.harness import http_json, wait_for
from tests.processes import stop_process

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"
PREFIXES = {"/opt/harvest/.venv": str(Path(sys.executable).parent.parent), "/opt/harvest": str(REPO)}


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: section -> key -> values in order (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def parse_environment_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines, comments skipped (systemd EnvironmentFile syntax, without quoting tricks)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and line[0] not in "#;")
    return {key.strip(): value.strip() for key, value in pairs}


def installed(value: str) -> str:
    for prefix, local in PREFIXES.items():
        if value.startswith(prefix):
            return local + value[len(prefix) :]
    return value


@dataclass
class Unit:
    """One unit's process as systemd would run it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    stop_timeout_s: float
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=output, stderr=output,
                                            stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip

    def stop(self) -> int:
        assert self.process is not None
        stop_process(self.process, timeout_s=self.stop_timeout_s)
        with_group_gone(self.process.pid)
        return self.process.returncode

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def with_group_gone(pgid: int) -> None:
    """SIGKILL what is left of the unit's control group (systemd does this after the main process exits)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def load_unit(name: str, environment_files: dict[str, Path], logs: Path) -> Unit:
    unit = parse_unit(UNITS / name)
    service = unit["Service"]
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": str(logs)}
    for file in service.get("EnvironmentFile", []):
        env.update(parse_environment_file(environment_files[file.lstrip("-")]))
    for assignment in service.get("Environment", []):
        for pair in shlex.split(assignment):
            key, _, value = pair.partition("=")
            env[key] = value
    (exec_start,) = service["ExecStart"]
    argv = [installed(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], word)) for word in shlex.split(exec_start)]
    timeout = float(service.get("TimeoutStopSec", ["90"])[0])
    return Unit(name, argv, env, installed(service["WorkingDirectory"][0]), timeout, logs / f"{name}.log")


def test_units_keep_the_collector_independent_of_dagster() -> None:
    collector = parse_unit(UNITS / "harvest-collector.service")
    assert collector["Service"]["Restart"] == ["always"]
    dagster_units = {
        "harvest-dagster-init.service",
        "harvest-dagster-daemon.service",
        "harvest-dagster-webserver.service",
    }
    for key in ("PartOf", "Requires", "BindsTo", "Requisite"):
        named = " ".join(collector["Unit"].get(key, []))
        assert not any(unit in named for unit in dagster_units) and "harvest.target" not in named, (key, named)
    for role in ("daemon", "webserver"):
        unit = parse_unit(UNITS / f"harvest-dagster-{role}.service")
        assert unit["Service"]["Restart"] == ["always"]
        assert "harvest-dagster-init.service" in unit["Unit"]["Requires"][0]
    example = tomllib.loads((REPO / "deploy" / "harvest-settings.example.toml").read_text())
    assert example["ui_host"] == "127.0.0.1"


def test_systemd_analyze_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    for unit in UNITS.iterdir():
        if unit.suffix in (".service", ".target"):
            text = unit.read_text()
            for prefix, local in PREFIXES.items():
                text = text.replace(prefix, local)
            text = text.replace("/etc/harvest/harvest.env", str(UNITS / "harvest.env"))
            text = "\n".join(line for line in text.splitlines() if not line.startswith(("User=", "Group=")))
            (tmp_path / unit.name).write_text(text + "\n")
    units = sorted(str(path) for path in tmp_path.iterdir())
    result = subprocess.run([analyze, "verify", "--man=no", *units], capture_output=True, text=True, timeout=60)
    problems = [line for line in result.stderr.splitlines() if "harvest" in line and "network-online" not in line]
    assert result.returncode == 0 or not problems, result.stderr
    assert not problems, result.stderr


def compacted_segments(parquet: Path) -> set[str]:
    """Segments with rows in the Parquet store (each segment's part file is named after it)."""
    return {part.name.split("-", 1)[1].removesuffix(".parquet") for part in parquet.rglob("*.parquet")}


def runs_in_progress(ui: str) -> list[str]:
    """Ids of runs the instance lists as starting or started (through the webserver's GraphQL API)."""
    query = "{ runsOrError(filter: {statuses: [STARTING, STARTED]}) { ... on Runs { results { runId } } } }"
    answer = http_json(f"{ui}/graphql", {"query": query})
    return [run["runId"] for run in answer["data"]["runsOrError"]["results"]]


def sealed_names(sealed_root: Path) -> set[str]:
    return {segment.name for segment in segments.list_sealed_segments(sealed_root)}


def test_restarting_dagster_never_stops_capture_and_compaction_resumes(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    sim = SimulatorProcess(tmp_path, symbols="BTCUSDT", rate=1.0)
    settings = tomllib.loads((REPO / "deploy" / "harvest-settings.example.toml").read_text())
    data = tmp_path / "data"
    ui_port = free_port()
    settings.update(data_root=str(data), ws_base=sim.info["ws_base"], rest_base=sim.info["rest_base"],
                    ui_port=ui_port, metrics_port=free_port(), segment_max_age_s=2)  # fmt: skip
    settings_file = tmp_path / "settings.json"
    settings_file.write_bytes(orjson.dumps(settings))
    shipped_env = parse_environment_file(UNITS / "harvest.env")
    assert set(shipped_env) == {"HARVEST_SETTINGS_FILE"}
    env_file = tmp_path / "harvest.env"
    env_file.write_text(f"HARVEST_SETTINGS_FILE={settings_file}\n")
    environment_files = {"/etc/harvest/harvest.env": env_file}
    units = {name: load_unit(f"harvest-{name}.service", environment_files, logs)
             for name in ("dagster-init", "collector", "dagster-daemon", "dagster-webserver")}  # fmt: skip
    sealed_root, parquet = data / "segments" / "sealed", data / "parquet"
    try:
        init = subprocess.run(units["dagster-init"].argv, env=units["dagster-init"].env, cwd=units["dagster-init"].cwd,
                              capture_output=True, text=True, timeout=180)  # fmt: skip
        assert init.returncode == 0, init.stderr
        for name in ("collector", "dagster-daemon", "dagster-webserver"):
            units[name].start()
        collector_pid = units["collector"].process.pid  # type: ignore[union-attr]
        ui = f"http://127.0.0.1:{ui_port}"
        wait_for("the Dagster UI", lambda: http_json(f"{ui}/server_info"), timeout_s=180)
        wait_for("a compacted segment", lambda: compacted_segments(parquet), timeout_s=240, interval_s=2)
        wait_for("a run in progress", lambda: runs_in_progress(ui), timeout_s=120, interval_s=0.5)  # killed with it

        for name in ("dagster-daemon", "dagster-webserver"):
            units[name].stop()
        down_at = sealed_names(sealed_root)
        time.sleep(8)
        during = sealed_names(sealed_root) - down_at
        assert len(during) >= 2, f"the collector must keep sealing while Dagster is down, sealed {sorted(during)}"
        assert units["collector"].alive and units["collector"].process.pid == collector_pid  # type: ignore[union-attr]

        for name in ("dagster-daemon", "dagster-webserver"):
            units[name].start()
        wait_for("the Dagster UI again", lambda: http_json(f"{ui}/server_info"), timeout_s=180)
        restarted_at = sealed_names(sealed_root)
        wait_for(
            "a segment sealed after the daemon restart to be compacted",
            lambda: compacted_segments(parquet) & (sealed_names(sealed_root) - restarted_at),
            timeout_s=240,
            interval_s=2,
        )
        assert compacted_segments(parquet) >= during, "segments sealed while Dagster was down were compacted too"
        assert units["collector"].alive and units["collector"].process.pid == collector_pid  # type: ignore[union-attr]
        assert units["collector"].stop() == 0
        assert not list((data / "segments" / "open").rglob(f"*{segments.OPEN_SUFFIX}")), "SIGTERM seals the segment"
    except BaseException:
        for log in sorted(logs.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        for unit in units.values():
            if unit.process is not None:
                unit.stop()
        sim.stop()

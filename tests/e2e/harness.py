"""Start `harvest up --simulate` as a user would, on free loopback ports, and talk to it the way an operator does."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from harvest_pipeline.up import SIMULATOR_READY_FILE, UP_STATE_FILE, free_port
from tests.processes import stop_process

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float, interval_s: float = 1.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last:
                return last
        except (OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last probe gave: {last!r})")


def http_json(url: str, body: Any | None = None, timeout_s: float = 10.0) -> Any:
    """GET (or POST ``body`` as JSON) and decode the JSON answer."""
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return orjson.loads(response.read())


@dataclass
class RunningPipeline:
    """A live `harvest up` process tree and the addresses it serves."""

    process: subprocess.Popen[bytes]
    data: Path
    ui_url: str
    metrics_url: str
    log_path: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a query against the Dagster webserver's GraphQL API."""
        answer = http_json(f"{self.ui_url}/graphql", {"query": query, "variables": variables or {}})
        if answer.get("errors"):
            raise ValueError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def up_state(self) -> dict[str, Any]:
        """The supervisor's view of its children (pids, starts, restarts)."""
        return orjson.loads((self.data / UP_STATE_FILE).read_bytes())

    def simulator_admin(self) -> str:
        """The simulator's admin base URL."""
        return orjson.loads((self.data / SIMULATOR_READY_FILE).read_bytes())["admin_base"]

    def logs(self) -> str:
        """Everything `up` and its children wrote, for failure messages."""
        parts = [self.log_path.read_text(errors="replace")]
        for child_log in sorted((self.data / "logs").glob("*.log")):
            parts.append(f"--- {child_log.name}\n" + child_log.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def kill_everything(self) -> None:
        """kill -9 of `up` and of every child it started (each runs in its own process group), as a power cut would."""
        children = self.up_state()["children"].values()
        for pid in [self.process.pid, *(child["pid"] for child in children if child.get("pid"))]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM `up` and wait; returns its exit code."""
        return stop_process(self.process, timeout_s=timeout_s, group=False)


def start_pipeline(
    data: Path, segment_seconds: float = 5.0, symbols: str = "BTCUSDT", watchdog_s: float = 20.0, market: str = "usdm"
) -> RunningPipeline:
    """Launch `python -m harvest_pipeline.cli up --simulate` on ``market`` with short segments and fast refresh
    knobs."""
    ui_port, metrics_port = free_port(), free_port()
    log_path = data.parent / f"{data.name}-up-{ui_port}.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HARVEST_WATCHDOG_S": str(watchdog_s),
        "HARVEST_FEATURES_REFRESH_S": "20",
        "HARVEST_SEGMENT_RETENTION_DAYS": "7",
        # a poll a minute would keep writing segments after the tests quiesce the market (tested in tests/collector
        # and tests/compaction/test_channels_to_parquet.py)
        "HARVEST_OPEN_INTEREST_INTERVAL_S": "0",
    }
    argv = [
        sys.executable, "-m", "harvest_pipeline.cli", "up", "--simulate", "--data", str(data),
        "--ui-port", str(ui_port), "--metrics-port", str(metrics_port), "--symbols", symbols,
        "--segment-seconds", str(segment_seconds), "--market", market,
    ]  # fmt: skip
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    return RunningPipeline(process, data, f"http://127.0.0.1:{ui_port}", f"http://127.0.0.1:{metrics_port}", log_path)

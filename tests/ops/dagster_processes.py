"""Dagster's own processes on harvest's instance, as ``harvest up`` starts them, for tests that need the daemon."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import dagster as dg

from harvest_pipeline.paths import DataPaths

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def harvest_env(paths: DataPaths, symbols: Iterable[str], day: str, **extra: str) -> dict[str, str]:
    """The environment ``harvest up`` gives Dagster's processes, for this test's instance and data."""
    return {
        **os.environ,
        "DAGSTER_HOME": str(paths.dagster_home),
        "HARVEST_DATA_ROOT": str(paths.root),
        "HARVEST_SYMBOLS": ",".join(symbols),
        "HARVEST_START_DATE": day,
        "HARVEST_FEATURES_REFRESH_S": "3600",
        **extra,
    }


def start_daemon(paths: DataPaths, log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``dagster-daemon run`` on harvest's instance, as ``harvest up`` starts it (in its own process group)."""
    return subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(paths.dagster_home / "workspace.yaml")],
        cwd=REPO_ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def failure_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """What the run's failure events say (step errors included)."""
    failures = (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE)
    messages = []
    for entry in instance.all_logs(run_id):
        if entry.dagster_event_type in failures:
            step = entry.dagster_event.step_failure_data if entry.dagster_event_type == failures[0] else None
            message = step.error.message if step and step.error else entry.message
            messages.append(f"{entry.step_key or 'run'}: {message}")
    return messages


def wait_for_runs(instance: dg.DagsterInstance, job: str, count: int, deadline: float, log: Path) -> list:
    """The job's run records once ``count`` of them have finished (failing fast on a failed run)."""
    while time.monotonic() < deadline:
        records = instance.get_run_records(filters=dg.RunsFilter(job_name=job))
        failed = [r.dagster_run.run_id for r in records if r.dagster_run.status == dg.DagsterRunStatus.FAILURE]
        assert not failed, f"{job} run(s) failed: {[failure_messages(instance, run_id) for run_id in failed]}"
        if sum(r.dagster_run.is_finished for r in records) >= count:
            return records
        time.sleep(0.5)
    raise AssertionError(f"{count} {job} run(s) not finished in time; daemon log {log}:\n{log.read_text()[-3000:]}")


def wait_for_the_catalog(instance: dg.DagsterInstance, paths: DataPaths, deadline: float, log: Path) -> None:
    """Until a fresh deployment's first run, the reading catalog (built when never materialized), has finished: it
    holds one of the two run slots while it runs."""
    while time.monotonic() < deadline:
        if (paths.root / "catalog.duckdb").exists() and all(run.is_finished for run in instance.get_runs()):
            return
        time.sleep(0.5)
    raise AssertionError(f"the reading catalog was not built in time; daemon log {log}:\n{log.read_text()[-3000:]}")

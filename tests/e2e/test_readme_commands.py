"""Every command and query the README shows runs as written, on a fresh copy of the repository.

The copy gets its own virtualenv from the README's first command (``pip install -e .`` from the package index, the
way a new machine does it), which then starts the whole pipeline; the other commands run against what it recorded,
with the README's example date replaced by the date of that data. ``test_every_readme_command_is_run_by_a_test``
fails when the README shows a command no test runs.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import orjson
import pytest

from harvest_pipeline.completeness import build_certificate, write_certificate
from harvest_pipeline.up import free_port
from tests.e2e.harness import http_json, wait_for
from tests.e2e.readme import EXAMPLE_DATE, REPO, command_matching, shell_commands, sql_statements, without_comment
from tests.processes import stop_process

pytestmark = pytest.mark.e2e

RUN_COMMAND = r"^python3 -m venv \.venv && \.venv/bin/pip install -e \. && \.venv/bin/harvest up --simulate$"
RUNNERS = {
    RUN_COMMAND: "test_the_run_command_installs_and_starts_the_pipeline_on_a_fresh_copy",
    r"^bash \.ci/run$": "CI itself: .ci/run is the command CI runs",
    r"^harvest status$": "test_status_and_features_commands_answer_about_the_recording",
    r"^harvest features ": "test_status_and_features_commands_answer_about_the_recording",
    r"harvest backfill --date ": "test_the_backfill_command_heals_the_recorded_day",
    r"^harvest simulate --symbols ": "test_the_simulator_commands_serve_fault_and_account",
    r"^curl ": "test_the_simulator_commands_serve_fault_and_account",
    r"^harvest simulate --replay ": "test_the_replay_command_serves_the_recorded_segments",
    r"dagster asset materialize ": "tests/ops/test_readme_backfill.py",
    r"dagster dev ": "test_dagster_dev_opens_harvests_own_instance",
    r"dagster instance migrate$": "test_the_upgrade_migration_command_runs_on_harvests_instance",
}


def test_every_readme_command_is_run_by_a_test() -> None:
    unclaimed = [c for c in shell_commands() if sum(bool(re.search(p, c)) for p in RUNNERS) != 1]
    assert not unclaimed, f"README commands no test runs (or claimed twice): {unclaimed}"
    assert len(sql_statements()) >= 4


@dataclass
class FreshCopy:
    """A copy of the repository with the pipeline started by the README's run command."""

    root: Path
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    ui_url: str

    def shell(self, command: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """Run one README command in the copy, as a user with the virtualenv on PATH would."""
        return subprocess.run(["bash", "-c", command], cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout_s)  # fmt: skip

    def recorded_date(self) -> str:
        """The UTC date of the recorded Parquet (the newest date folder)."""
        dates = sorted(p.name.removeprefix("date=") for p in (self.root / "data/parquet/market=usdm").glob("date=*"))
        assert dates, "nothing was compacted"
        return dates[-1]

    def logs(self) -> str:
        parts = [self.log.read_text(errors="replace")[-6000:]]
        parts += [f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in (self.root / "data/logs").glob("*")]
        return "\n".join(parts)


def copy_repository(target: Path) -> Path:
    """The files a clone of the working tree has (tracked and new, not ignored), without venv or data."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshCopy]:
    root = copy_repository(tmp_path_factory.mktemp("readme") / "harvest")
    ui_port, metrics_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HARVEST_", "DAGSTER_"))}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    env.update(
        PATH=f"{root / '.venv/bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        HARVEST_UI_PORT=str(ui_port),  # free ports instead of 3000/9108, which a developer's own `up` may hold
        HARVEST_METRICS_PORT=str(metrics_port),
        HARVEST_SEGMENT_MAX_AGE_S="5",
        HARVEST_FEATURES_REFRESH_S="20",
    )
    log = root.parent / "up.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["bash", "-c", command_matching(RUN_COMMAND)], cwd=root, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    copy = FreshCopy(root, process, log, env, f"http://127.0.0.1:{ui_port}")
    try:
        wait_for("pip install and the Dagster UI", lambda: _alive(copy) and http_json(f"{copy.ui_url}/server_info"),
                 timeout_s=900, interval_s=2)  # fmt: skip
        features = "data/parquet/market=usdm/date=*/symbol=BTCUSDT/kind=features_1s/features.parquet"
        wait_for("today's features", lambda: _alive(copy) and list(root.glob(features)), timeout_s=300, interval_s=2)
        yield copy
    except BaseException:
        print(copy.logs())
        raise
    finally:
        stop_process(process, signal.SIGINT, timeout_s=90)


def _alive(copy: FreshCopy) -> bool:
    if copy.process.poll() is not None:
        raise AssertionError(f"the README's run command exited {copy.process.returncode}\n{copy.logs()}")
    return True


def test_the_run_command_installs_and_starts_the_pipeline_on_a_fresh_copy(fresh_copy: FreshCopy) -> None:
    banner = fresh_copy.log.read_text()
    assert "SOURCE: built-in simulator" in banner and "--simulate was given" in banner
    prices = list((fresh_copy.root / "data/parquet/market=usdm").glob("date=*/symbol=*/kind=prices/*.parquet"))
    assert prices, "no trades were compacted"


def test_example_queries_run_on_the_recorded_data(fresh_copy: FreshCopy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(fresh_copy.root)
    date = fresh_copy.recorded_date()
    day, parquet = dt.date.fromisoformat(date), fresh_copy.root / "data/parquet/market=usdm"
    write_certificate(build_certificate(parquet, day, "BTCUSDT"), parquet, day, "BTCUSDT")  # as the nightly run does
    answers = {}
    for statement in sql_statements():
        answers[statement] = duckdb.sql(statement.replace(EXAMPLE_DATE, date)).fetchall()
    trades, per_kind, features, _feed_holes, certificate, _holes, book = answers.values()
    assert trades and features, "the trades and features queries found no rows"
    assert book and all(best_bid < best_ask for _, best_bid, best_ask, _, _ in book), "today's book is refreshed"
    assert {kind for _, kind, _ in per_kind} >= {"prices", "bookticker", "orderbook", "events", "features_1s"}
    assert [row[0] for row in certificate] == ["btcusdt@aggTrade", "btcusdt@depth@100ms"], certificate
    assert all(row[1] for row in certificate), f"a fresh simulated recording is certified: {certificate}"


def test_status_and_features_commands_answer_about_the_recording(fresh_copy: FreshCopy) -> None:
    status = fresh_copy.shell(command_matching(r"^harvest status$"))
    assert "collector" in status.stdout.lower(), status.stdout + status.stderr
    features_command = command_matching(r"^harvest features ").replace(EXAMPLE_DATE, fresh_copy.recorded_date())
    features = fresh_copy.shell(features_command)
    assert features.returncode == 0, features.stdout + features.stderr
    assert "86400" in features.stdout.replace(",", ""), features.stdout


def test_the_backfill_command_heals_the_recorded_day(fresh_copy: FreshCopy) -> None:
    command = command_matching(r"harvest backfill --date ").replace(EXAMPLE_DATE, fresh_copy.recorded_date())
    healed = fresh_copy.shell(command)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert "BTCUSDT" in healed.stdout + healed.stderr, healed.stdout + healed.stderr


def test_the_simulator_commands_serve_fault_and_account(fresh_copy: FreshCopy) -> None:
    start = command_matching(r"^harvest simulate --symbols ")
    simulator = subprocess.Popen(["bash", "-c", f"exec {start}"], cwd=fresh_copy.root, env=fresh_copy.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for("sim.json", lambda: (fresh_copy.root / "sim.json").exists(), timeout_s=60, interval_s=0.5)
        fault = fresh_copy.shell(command_matching("/admin/fault"))
        accounting = fresh_copy.shell(command_matching("/admin/accounting"))
        assert fault.returncode == 0 and orjson.loads(fault.stdout), fault.stdout + fault.stderr
        assert "streams" in orjson.loads(accounting.stdout), accounting.stdout
    finally:
        simulator.send_signal(signal.SIGTERM)
        simulator.wait(timeout=30)
    assert simulator.returncode == 0
    assert "streams" in orjson.loads((fresh_copy.root / "sent.json").read_bytes()), "no accounting file at shutdown"


def test_the_replay_command_serves_the_recorded_segments(fresh_copy: FreshCopy) -> None:
    day = sorted((fresh_copy.root / "data/segments/sealed").glob("date=*"))[-1].name.removeprefix("date=")
    replay = without_comment(command_matching(r"^harvest simulate --replay ")).replace(EXAMPLE_DATE, day)
    process = subprocess.Popen(["bash", "-c", f"exec {replay} --ready-file replay.json"], cwd=fresh_copy.root,
                               env=fresh_copy.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        ready = wait_for("the replay", lambda: orjson.loads((fresh_copy.root / "replay.json").read_bytes()), 60, 0.5)
        accounting = http_json(f"{ready['admin_base']}/admin/accounting")
        assert process.poll() is None and "streams" in accounting
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def stopped_copy(fresh_copy: FreshCopy) -> FreshCopy:
    """The copy after Ctrl-C of ``harvest up`` (which must exit cleanly)."""
    os.killpg(fresh_copy.process.pid, signal.SIGINT)
    assert fresh_copy.process.wait(timeout=90) == 0, fresh_copy.logs()
    return fresh_copy


def test_dagster_dev_opens_harvests_own_instance(stopped_copy: FreshCopy) -> None:
    command = command_matching(r"dagster dev ")
    port, log = free_port(), stopped_copy.root.parent / "dagster-dev.log"
    with open(log, "wb") as out:
        dev = subprocess.Popen(["bash", "-c", command.replace("3000", str(port))], cwd=stopped_copy.root,
                               env=stopped_copy.env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for("dagster dev", lambda: http_json(f"{url}/server_info"), timeout_s=180, interval_s=2)
        query = "{ runsOrError { ... on Runs { results { jobName status } } } }"
        runs = http_json(f"{url}/graphql", {"query": query})["data"]["runsOrError"]["results"]
        assert any(run["jobName"] == "compact_segments" and run["status"] == "SUCCESS" for run in runs), runs
    except BaseException:
        print(log.read_text(errors="replace")[-6000:])
        raise
    finally:
        stop_process(dev, signal.SIGINT, timeout_s=60)


def test_the_upgrade_migration_command_runs_on_harvests_instance(stopped_copy: FreshCopy) -> None:
    migrated = stopped_copy.shell(command_matching(r"dagster instance migrate$"))
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert str(stopped_copy.root / "data/dagster_home") in migrated.stdout + migrated.stderr

"""What keeps a sealed segment's wait for Parquet short (docs/freshness.md): the run queue dequeues every second, the
sensor is due on every pass of the daemon, the compaction step runs inside its run worker and still retries, and the
code location loads without matplotlib."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._daemon.sensor import MIN_INTERVAL_LOOP_TIME

from assets.compaction import COMPACTION_ASSETS, COMPACTION_JOB, RAW_KIND_KEYS, SEGMENT_PARTITIONS
from assets.resources import HarvestStorage
from harvest_pipeline.dagster_home import DEQUEUE_INTERVAL_S, ensure_dagster_home
from harvest_pipeline.definitions import defs
from harvest_pipeline.paths import DATA_ROOT_ENV, DataPaths
from sensors.partition_ranges import batch_requests
from sensors.segments import WATCH_GRACE_S, WATCH_S, sealed_segments
from tests.compaction.test_dagster_compaction import FlakyStorage, write_segments
from tests.ops.segment_files import SECOND_NS, seal_segment
from tests.ops.test_discovery import requested, tick

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def test_the_instance_launches_queued_runs_every_second_in_threads(tmp_path: Path) -> None:
    ensure_dagster_home(DataPaths.from_root(tmp_path / "data"))
    with dg.DagsterInstance.from_config(str(tmp_path / "data" / "dagster_home")) as harvest_instance:
        coordinator = harvest_instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        assert coordinator.dequeue_interval_seconds == DEQUEUE_INTERVAL_S == 1  # type: ignore[attr-defined]
        assert coordinator.dequeue_use_threads  # type: ignore[attr-defined]


def test_the_segments_sensor_is_due_on_every_pass_of_the_sensor_daemon() -> None:
    assert sealed_segments.minimum_interval_seconds is not None
    assert sealed_segments.minimum_interval_seconds < MIN_INTERVAL_LOOP_TIME, (
        "an interval equal to the daemon's pass would skip every other pass whenever a tick starts early"
    )
    assert WATCH_S < MIN_INTERVAL_LOOP_TIME, "a watching tick must end before the daemon's next pass"


def seal_later(paths: DataPaths, delay_s: float, opened_at_ns: int, counter: int) -> tuple[threading.Thread, list]:
    """Seal a segment ``delay_s`` from now in a thread, as the collector would; the list gets (name, sealed_at_ns)."""
    sealed: list[tuple[str, int]] = []

    def seal() -> None:
        time.sleep(delay_s)
        now = time.time_ns()
        sealed.append((seal_segment(paths, opened_at_ns, now, counter), now))

    thread = threading.Thread(target=seal)
    thread.start()
    return thread, sealed


def test_a_quiet_tick_registers_a_segment_sealed_while_its_collector_was_due(instance, tmp_path: Path) -> None:
    paths = DataPaths.from_root(tmp_path)
    interval_ns = int(HarvestStorage(data_root=str(tmp_path)).settings().segment_max_age_s * SECOND_NS)
    sealed_at = time.time_ns() - interval_ns + SECOND_NS  # its collector seals again in 1 s
    first = seal_segment(paths, sealed_at - interval_ns, sealed_at, 1)
    registered = tick(instance, paths, None)
    assert requested(instance, registered) == [first]

    thread, second = seal_later(paths, 1.0, sealed_at, 2)
    watching = tick(instance, paths, registered.cursor)
    returned_ns = time.time_ns()
    thread.join()

    [(name, second_sealed_at)] = second
    assert requested(instance, watching) == [name], "found by the tick that was running when it was sealed"
    assert (returned_ns - second_sealed_at) / SECOND_NS < 1.0, "registered right after its seal, not a pass later"


def test_a_watching_tick_gives_up_soon_after_a_seal_that_does_not_come(instance, tmp_path: Path) -> None:
    paths = DataPaths.from_root(tmp_path)
    interval_ns = int(HarvestStorage(data_root=str(tmp_path)).settings().segment_max_age_s * SECOND_NS)
    sealed_at = time.time_ns() - interval_ns + SECOND_NS  # due in 1 s, but the collector has stopped
    seal_segment(paths, sealed_at - interval_ns, sealed_at, 1)
    registered = tick(instance, paths, None)

    quiet = tick(instance, paths, registered.cursor)
    given_up_s = time.time() - (sealed_at + interval_ns) / SECOND_NS
    assert not quiet.run_requests
    assert WATCH_GRACE_S - 0.1 < given_up_s < WATCH_GRACE_S + 1.5, "watched until the seal was a grace late"
    started = time.monotonic()
    assert not tick(instance, paths, quiet.cursor).run_requests
    assert time.monotonic() - started < 0.5, "nothing is due any more: the tick returns at once"


def flaky_compaction_job() -> dg.JobDefinition:
    """The real compaction job (its own executor) over a storage whose first Parquet rename fails."""
    root = os.environ[DATA_ROOT_ENV]
    storage = FlakyStorage(data_root=root, marker=str(Path(root) / "failed-once"))
    return dg.Definitions(
        assets=COMPACTION_ASSETS, jobs=[COMPACTION_JOB], resources={"storage": storage}
    ).resolve_job_def(COMPACTION_JOB.name)


def test_the_compaction_step_runs_in_the_run_worker_and_a_transient_failure_is_retried(
    instance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert defs.resolve_job_def(COMPACTION_JOB.name).executor_def is dg.in_process_executor
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
    names = write_segments(tmp_path, 2)
    [request] = batch_requests(names)
    instance.add_dynamic_partitions(SEGMENT_PARTITIONS.name, names)

    with dg.execute_job(dg.reconstructable(flaky_compaction_job), instance, tags=request.tags) as result:
        assert result.success
        events = result.all_events

    assert (tmp_path / "failed-once").exists()
    assert len([e for e in events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]) == 1
    step_pids = {e.pid for e in events if e.step_key is not None}
    assert step_pids == {os.getpid()}, "the step ran in the run's own process, not in a step subprocess"
    assert instance.get_materialized_partitions(RAW_KIND_KEYS["prices"]) == set(names)


def test_the_code_location_loads_without_importing_matplotlib() -> None:
    probe = "import sys, harvest_pipeline.definitions; print([m for m in sys.modules if m.startswith('matplotlib')])"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]", "matplotlib costs ~0.35 s in every run worker; import it where the chart is drawn"

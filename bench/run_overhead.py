"""Per-run Dagster overhead of compaction runs launched the way harvest launches them, and where each run's time goes.

    python bench/run_overhead.py [--runs 8] [--frames 1000]

harvest's own instance (``ensure_dagster_home``: the generated dagster.yaml) in a temporary data root, and only
``dagster-daemon`` on it, as ``harvest up`` runs it (sensor daemon, run queue, code server, run workers). One tiny
segment is sealed at a time, at a random moment of the sensor loop's 5 s; the ``sealed_segments`` sensor registers it
and requests its run, and the next segment is sealed once that run has ended. Per run, from its own event log, the
sidecar and the Parquet files:

    sensor    sealed -> run created           waiting for the sensor's next tick, and the tick
    queue     created -> launched             the run queue's dequeue interval
    worker    launched -> run started         the run worker process starting (spawn, imports, instance)
    to step   run started -> step started
    step      step started -> step ended      compaction itself (its ``duration_s`` metadata) and its events
    finish    step ended -> run ended

per-run overhead = (launched -> run ended) - compaction. Same-run baselines: a fresh Python process that imports
``dagster``, and one that imports harvest's code location: the least any run worker pays before its first step.
These segments are not sealed on a collector's clock, so the sensor's watch for a due seal never applies: the sensor
phase here is Dagster's unassisted 5 s pace (``bench/freshness.py`` shows it as the pipeline sees it).
"""

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402

from bench.compaction import make_segment  # noqa: E402
from harvest_pipeline import segments  # noqa: E402
from harvest_pipeline.dagster_home import ensure_dagster_home  # noqa: E402
from harvest_pipeline.paths import DAGSTER_HOME_ENV, DATA_ROOT_ENV, DataPaths  # noqa: E402
from harvest_pipeline.status import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG  # noqa: E402
from tests.compaction.frames import MS, TrafficMix  # noqa: E402
from tests.e2e.harness import REPO, wait_for  # noqa: E402

SYMBOLS = "BTCUSDT,ETHUSDT"
COMPACTION_JOB = "compact_segments"
SENSOR_LOOP_S = 5.0
"""Dagster's sensor daemon passes over its sensors at most this often; seals are spread over one such pass."""
EVENT_TYPES = {
    dg.DagsterEventType.RUN_STARTING,
    dg.DagsterEventType.RUN_START,
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.RUN_SUCCESS,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
}
PHASES = (
    ("sensor   sealed -> run created", "sealed_s", "created_s"),
    ("queue    created -> launched", "created_s", "launched_s"),
    ("worker   launched -> run started", "launched_s", "started_s"),
    ("to step  run started -> step started", "started_s", "step_started_s"),
    ("step     step started -> step ended", "step_started_s", "step_ended_s"),
    ("finish   step ended -> run ended", "step_ended_s", "ended_s"),
    ("sealed -> last Parquet file placed", "sealed_s", "file_s"),
    ("launched -> run ended", "launched_s", "ended_s"),
)


@dataclass(frozen=True)
class RunTimeline:
    """When a compaction run passed each stage (seconds since the epoch, one host clock) and its compaction time."""

    run_id: str
    segments: list[str]
    sealed_s: float
    """The latest seal among the run's segments: the moment the run's last input became available."""
    created_s: float
    launched_s: float
    started_s: float
    step_started_s: float
    step_ended_s: float
    ended_s: float
    file_s: float
    """The last Parquet part of the run's segments placed (mtime): when all of its data became queryable."""
    compaction_s: float

    def span(self, start: str, end: str) -> float:
        return getattr(self, end) - getattr(self, start)

    @property
    def overhead_s(self) -> float:
        """Launch to run end, minus what compaction itself took."""
        return self.ended_s - self.launched_s - self.compaction_s


def run_segments(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The segment partitions a compaction run covered (from its partition range tags)."""
    keys = list(instance.get_dynamic_partitions("segments"))
    first, last = run.tags[PARTITION_RANGE_START_TAG], run.tags[PARTITION_RANGE_END_TAG]
    return keys[keys.index(first) : keys.index(last) + 1]


def run_timeline(instance: dg.DagsterInstance, record: dg.RunRecord, paths: DataPaths) -> RunTimeline:
    """The stages of one successful compaction run, from its event log, its segments' sidecars and their files."""
    run = record.dagster_run
    names = run_segments(instance, run)
    first: dict[dg.DagsterEventType, float] = {}
    last: dict[dg.DagsterEventType, float] = {}
    compaction_s = 0.0
    for entry in instance.all_logs(run.run_id, of_type=EVENT_TYPES):
        event = entry.get_dagster_event()
        first.setdefault(event.event_type, entry.timestamp)
        last[event.event_type] = entry.timestamp
        materialization = event.step_materialization_data.materialization if event.is_step_materialization else None
        if materialization is not None and materialization.asset_key == dg.AssetKey("events"):
            duration = materialization.metadata["duration_s"]
            assert isinstance(duration, dg.FloatMetadataValue), duration
            compaction_s += duration.value or 0.0
    sealed = [segments.find_sealed_segment(paths.sealed_segments, name).load_meta().sealed_at_ns for name in names]
    parts = [p for name in names for p in paths.parquet.glob(f"market=*/date=*/symbol=*/kind=*/part-{name}.parquet")]
    if not parts:
        raise RuntimeError(f"run {run.run_id} succeeded but no Parquet part of {names[0]}..{names[-1]} exists")
    return RunTimeline(
        run_id=run.run_id,
        segments=names,
        sealed_s=max(sealed) / 1e9,
        created_s=record.create_timestamp.timestamp(),
        launched_s=first[dg.DagsterEventType.RUN_STARTING],
        started_s=first[dg.DagsterEventType.RUN_START],
        step_started_s=first[dg.DagsterEventType.STEP_START],
        step_ended_s=last[dg.DagsterEventType.STEP_SUCCESS],
        ended_s=last[dg.DagsterEventType.RUN_SUCCESS],
        file_s=max(p.stat().st_mtime_ns for p in parts) / 1e9,
        compaction_s=compaction_s,
    )


def compaction_timelines(instance: dg.DagsterInstance, paths: DataPaths) -> list[RunTimeline]:
    """Timelines of every successful compaction run of the instance, oldest first."""
    records = instance.get_run_records(
        dg.RunsFilter(job_name=COMPACTION_JOB, statuses=[dg.DagsterRunStatus.SUCCESS]), ascending=True
    )
    return [run_timeline(instance, record, paths) for record in records]


def print_phases(timelines: list[RunTimeline]) -> None:
    """Median, min and max of each stage over ``timelines``."""
    print(f"{'per run (s)':<40} {'median':>7} {'min':>7} {'max':>7}")
    for label, start, end in PHASES:
        spans = [t.span(start, end) for t in timelines]
        print(f"  {label:<38} {statistics.median(spans):7.2f} {min(spans):7.2f} {max(spans):7.2f}")
    compaction = [t.compaction_s for t in timelines]
    print(f"  {'compaction (duration_s metadata)':<38} {statistics.median(compaction):7.2f} "
          f"{min(compaction):7.2f} {max(compaction):7.2f}")  # fmt: skip


def start_daemon(paths: DataPaths, log_path: Path) -> subprocess.Popen[bytes]:
    """``dagster-daemon run`` alone on the data root's instance, in its own process group."""
    workspace = ensure_dagster_home(paths)
    env = {**os.environ, "PYTHONPATH": str(REPO), DATA_ROOT_ENV: str(paths.root),
           DAGSTER_HOME_ENV: str(paths.dagster_home), "HARVEST_SYMBOLS": SYMBOLS}  # fmt: skip
    argv = [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)]
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(argv, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def stop_daemon(daemon: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """SIGTERM the daemon's process group (daemon and code server); SIGKILL it if it does not exit in time."""
    if daemon.poll() is None:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()


def finished_run_of(instance: dg.DagsterInstance, name: str) -> Callable[[], dg.RunRecord | None]:
    """A probe for the finished compaction run whose range ends at segment ``name``; raises if it failed."""

    def probe() -> dg.RunRecord | None:
        filters = dg.RunsFilter(job_name=COMPACTION_JOB, tags={PARTITION_RANGE_END_TAG: name})
        for record in instance.get_run_records(filters):
            run = record.dagster_run
            if run.status == dg.DagsterRunStatus.SUCCESS:
                return record
            if run.is_finished:
                raise RuntimeError(f"compaction run {run.run_id} of {name} ended {run.status.value}")
        return None

    return probe


def measure_runs(root: Path, runs: int, frames: int) -> list[RunTimeline]:
    """Seal one tiny segment at a time under a live daemon; the timeline of each one's run (the first is warm-up)."""
    paths = DataPaths.from_root(root / "data")
    log_path = root / "dagster-daemon.log"
    daemon = start_daemon(paths, log_path)
    jitter = random.Random(14)
    timelines = []
    try:
        with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
            for index in range(runs + 1):
                opened_ms = time.time_ns() // MS
                name = make_segment(paths.root, frames, opened_ms, index + 1, TrafficMix(start_ms=opened_ms)).name
                record = wait_for(f"the compaction run of {name}", finished_run_of(instance, name), 180, 0.1)
                if index:
                    timelines.append(run_timeline(instance, record, paths))
                time.sleep(jitter.uniform(0, SENSOR_LOOP_S))
    except BaseException:
        print(log_path.read_text(errors="replace")[-8000:])
        raise
    finally:
        stop_daemon(daemon)
    return timelines


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def import_seconds(statement: str, repeat: int = 3) -> float:
    """Best wall time of a fresh Python process running ``statement`` (process start and imports)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], cwd=REPO, env=env, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="measured runs (one more warms up)")
    parser.add_argument("--frames", type=int, default=1000, help="frames per segment")
    args = parser.parse_args()
    print(f"load average at start: {load_average()}", flush=True)
    dagster_s = import_seconds("import dagster")
    code_s = import_seconds("import harvest_pipeline.definitions")
    with tempfile.TemporaryDirectory(prefix="bench-run-overhead-") as tmp:
        timelines = measure_runs(Path(tmp), args.runs, args.frames)
    overhead = [t.overhead_s for t in timelines]
    print(f"\n{len(timelines)} compaction runs (after 1 warm-up), one {args.frames:,}-frame segment each, launched by "
          f"dagster-daemon on harvest's instance")  # fmt: skip
    print_phases(timelines)
    print(f"per-run overhead (launched -> run ended - compaction): median {statistics.median(overhead):.2f} s, "
          f"min {min(overhead):.2f} s, max {max(overhead):.2f} s (goal <= 2.50 s)")  # fmt: skip
    print(f"baseline, same run: a fresh python -c 'import dagster' {dagster_s:.2f} s, "
          f"-c 'import harvest_pipeline.definitions' {code_s:.2f} s (best of 3)")  # fmt: skip
    print(f"ratio overhead / code-location import = {statistics.median(overhead) / code_s:.2f}")
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()

"""A month in an hour: does Dagster state stay bounded while 30 simulated days go through every sensor and job?

    python bench/soak_month.py [--days 30] [--segments-per-day 1440] [--symbols BTCUSDT,ETHUSDT] [--ticks-per-day 4]
                               [--out DIR]

A real on-disk SQLite instance (``ensure_dagster_home``) and real files. Per simulated day (starting ``--days`` + 1
days before today, so every day is a valid date partition): the day's segments are written and sealed in
``--ticks-per-day`` chunks (names, date folders and sidecar seal times in simulated time, a few aggTrade, bookTicker
and depth frames per symbol each, built with the simulator's wire format); after each chunk every sensor of
``harvest_pipeline.definitions.defs`` is evaluated as the daemon would (its cursor, dynamic-partition requests,
run keys de-duplicated against the instance) and declarative automation too when any asset has a condition; every
run request is executed in-process against the instance. At the day boundary every schedule ticks once (its cron's
minute and hour on that day; an hourly schedule ticks once per simulated day). Retention jobs get the simulated
clock through their config: segment retention counts from the simulated "now", run-history retention deletes runs
that finished before the wall-clock moment the simulated day ``now - HARVEST_RUN_RETENTION_DAYS`` began.

One row per day: median sensor round time (all sensors of one tick, ms), median per-run overhead of compaction runs
(run wall time minus the compaction ``duration_s`` the run reports, ms), runs, DAGSTER_HOME size (MB), registered
segment partitions, sealed segments on disk, most Parquet files in one date/symbol/kind folder. Then last day / day 1
for tick time and run overhead (goal <= 1.2) and MB added per day late vs early (after retention's steady state).
Wall clock, in-process execution: per-run overhead here excludes the run worker's import and step subprocess that a
daemon-launched run pays (bench/compaction.py measures those).
"""

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402

from harvest_pipeline import segments  # noqa: E402
from harvest_pipeline.dagster_home import ensure_dagster_home  # noqa: E402
from harvest_pipeline.paths import DAGSTER_HOME_ENV, DATA_ROOT_ENV, DataPaths  # noqa: E402
from harvest_pipeline.simulator import wire  # noqa: E402
from harvest_pipeline.simulator.instruments import instrument  # noqa: E402
from harvest_pipeline.simulator.market import DepthDiff, Top, Trade  # noqa: E402
from harvest_pipeline.status import SEGMENT_PARTITIONS_NAME, directory_bytes  # noqa: E402

DAY_NS = 86400 * 10**9
SEGMENT_NS = 60 * 10**9
GOAL_RATIO = 1.2
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
"""Runs still store every event; only the console echo of each one (thousands a day) is left out."""
RUN_KEY_TAG = "dagster/run_key"
SENSOR_TAG = "dagster/sensor_name"
SCHEDULE_TAG = "dagster/schedule_name"
BENCH_ENV = {"HARVEST_SEGMENT_RETENTION_DAYS": "7", "HARVEST_RUN_RETENTION_DAYS": "8"}
"""Retention short enough that a month reaches its steady state (runs must outlive segments by a day)."""


@dataclass
class SymbolIds:
    """Per-symbol exchange ids, advanced so every segment continues the last one."""

    agg_id: int = 1_000
    update_id: int = 5_000


@dataclass
class SegmentSource:
    """Writes one sealed 60 s segment at a time: per symbol 2 aggTrades, 2 bookTickers and 1 depth diff."""

    paths: DataPaths
    symbols: list[str]
    ids: dict[str, SymbolIds] = field(default_factory=dict)
    counter: int = 0

    def write(self, opened_ns: int) -> str:
        self.counter += 1
        name = segments.segment_name(opened_ns, "soak", "b00t", self.counter)
        open_dir = self.paths.open_segments / "soak"
        open_dir.mkdir(parents=True, exist_ok=True)
        segment = segments.OpenSegment(open_dir, name, "soak", opened_ns)
        segment.append(list(self._lines(opened_ns)))
        segment.seal(self.paths.sealed_segments, sealed_at_ns=opened_ns + SEGMENT_NS)
        return name

    def _lines(self, opened_ns: int) -> Iterable[segments.Line]:
        seq = 0
        for offset, symbol in enumerate(self.symbols):
            spec, ids = instrument(symbol), self.ids.setdefault(symbol, SymbolIds())
            mid = spec.start_ticks
            for i in range(2):
                event_ms = opened_ns // 10**6 + 1000 * (10 * i + offset + 1)
                ids.agg_id += 1
                ids.update_id += 3
                top = Top(ids.update_id, mid - 1, 5 + i, mid + 1, 7)
                trade = Trade(ids.agg_id, mid, 2 + i, ids.agg_id * 3, ids.agg_id * 3 + 1, i == 0)
                payloads = [
                    (wire.AGG_TRADE, wire.agg_trade(spec, trade, event_ms, event_ms - 1)),
                    (wire.BOOK_TICKER, wire.book_ticker(spec, top, event_ms)),
                ]
                if i == 1:
                    diff = DepthDiff(ids.update_id - 2, ids.update_id, ids.update_id - 3, [], [])
                    levels = [(mid - 2, 3)], [(mid + 2, 0)]
                    payloads.append((wire.DEPTH_DIFF, wire.depth_update(spec, diff, event_ms, *levels)))
                for kind, payload in payloads:
                    stream = wire.stream_name(symbol, kind)
                    seq += 1
                    frame = wire.combined_prefix(stream) + payload + b"}"
                    yield segments.encode_frame((event_ms + 3) * 10**6, "c1", seq, stream, frame)


@dataclass
class DayFigures:
    """What one simulated day measured."""

    ticks_ms: list[float] = field(default_factory=list)
    instigator_ms: dict[str, list[float]] = field(default_factory=dict)
    """Each sensor's (and the automation evaluation's) own time per round: which one grows, if any."""
    overheads_ms: list[float] = field(default_factory=list)
    runs: int = 0
    failed: int = 0


class Soak:
    """Drives ``defs`` against one instance like the daemon would, on a simulated clock."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, paths: DataPaths, run_config_for: Callable):
        self.defs, self.instance, self.paths = defs, instance, paths
        self.repository = defs.get_repository_def()
        self.cursors: dict[str, str | None] = {}
        self.automation_cursor = None
        self.has_automation = any(
            spec.automation_condition is not None for spec in self.repository.asset_graph.asset_nodes
        )
        self.run_config_for = run_config_for

    def tick_sensors(self, now: dt.datetime, figures: DayFigures) -> None:
        """One round: every sensor (and automation, if any) evaluated once, its requests applied and run."""
        requests: list[tuple[str, str, dg.RunRequest]] = []
        started = time.perf_counter()
        for sensor in self.repository.sensor_defs:
            if isinstance(sensor, dg.AutomationConditionSensorDefinition):
                continue  # evaluated below, as the daemon's automation tick
            context = dg.build_sensor_context(
                instance=self.instance,
                cursor=self.cursors.get(sensor.name),
                repository_def=self.repository,
                resources=self.defs.resources,
            )
            sensor_started = time.perf_counter()
            result = sensor.evaluate_tick(context)
            self.cursors[sensor.name] = result.cursor
            for request in result.dynamic_partitions_requests or []:
                self._apply_partitions(request)
            figures.instigator_ms.setdefault(sensor.name, []).append((time.perf_counter() - sensor_started) * 1000)
            job = sensor.job_name if sensor.has_jobs and len(sensor.jobs) == 1 else None
            requests += [(SENSOR_TAG, sensor.name, self._with_job(r, job)) for r in result.run_requests or []]
        automation_started = time.perf_counter()
        automation_runs = self._evaluate_automation(now) if self.has_automation else []
        figures.instigator_ms.setdefault("automation", []).append((time.perf_counter() - automation_started) * 1000)
        figures.ticks_ms.append((time.perf_counter() - started) * 1000)
        self._execute(requests, figures, now)
        for run in automation_runs:
            run(figures)

    def tick_schedules(self, day: dt.date, figures: DayFigures) -> None:
        """Every schedule once, at its cron minute and hour on ``day``."""
        requests = []
        for schedule in self.repository.schedule_defs:
            when = first_tick_of_day(schedule.cron_schedule, day)
            context = dg.build_schedule_context(
                instance=self.instance,
                scheduled_execution_time=when,
                repository_def=self.repository,
                resources=self.defs.resources,
            )
            data = schedule.evaluate_tick(context)
            requests += [
                (SCHEDULE_TAG, schedule.name, self._with_job(r, schedule.job_name)) for r in data.run_requests or []
            ]
        self._execute(requests, figures, dt.datetime.combine(day, dt.time(), dt.UTC))

    def _apply_partitions(self, request: dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest) -> None:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                self.instance.delete_dynamic_partition(request.partitions_def_name, key)

    @staticmethod
    def _with_job(request: dg.RunRequest, job: str | None) -> dg.RunRequest:
        return request if request.job_name or job is None else request.with_replaced_attrs(job_name=job)

    def _execute(self, requests: list[tuple[str, str, dg.RunRequest]], figures: DayFigures, now: dt.datetime) -> None:
        for tag, instigator, request in requests:
            tags = {**request.tags, tag: instigator}
            if request.run_key:
                seen = dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key, tag: instigator})
                if self.instance.get_runs_count(seen):
                    continue
                tags[RUN_KEY_TAG] = request.run_key
            job = self.defs.resolve_job_def(request.job_name)
            run_config = {**(request.run_config or {}), **self.run_config_for(job.name, now), **QUIET_LOGS}
            execute = partial(
                job.execute_in_process,
                run_config=run_config,
                instance=self.instance,
                partition_key=request.partition_key,
                tags=tags,
                raise_on_error=False,
            )
            self._timed(execute, figures)

    def _timed(self, execute: Callable[[], dg.ExecuteInProcessResult], figures: DayFigures) -> None:
        started = time.perf_counter()
        result = execute()
        wall_s = time.perf_counter() - started
        figures.runs += 1
        figures.failed += not result.success
        work = [
            event.materialization.metadata["duration_s"].value
            for event in result.get_asset_materialization_events()
            if event.materialization.asset_key == dg.AssetKey("events")
            and "duration_s" in event.materialization.metadata
        ]
        if work:
            figures.overheads_ms.append((wall_s - float(work[0])) * 1000)

    def _evaluate_automation(self, now: dt.datetime) -> list[Callable[[DayFigures], None]]:
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.automation_cursor, evaluation_time=now
        )
        self.automation_cursor = result.cursor
        by_partition: dict[str | None, list[dg.AssetKey]] = {}
        for key in self.repository.asset_graph.get_all_asset_keys():
            for partition in result.get_requested_partitions(key):
                by_partition.setdefault(partition, []).append(key)
        job = self.defs.resolve_implicit_global_asset_job_def()
        return [
            lambda figures, p=partition, keys=keys: self._timed(
                lambda: job.execute_in_process(
                    instance=self.instance,
                    asset_selection=keys,
                    partition_key=p,
                    raise_on_error=False,
                    run_config=QUIET_LOGS,
                ),
                figures,
            )
            for partition, keys in by_partition.items()
        ]


def first_tick_of_day(cron: str | list[str], day: dt.date) -> dt.datetime:
    """The cron's minute and hour on ``day`` (``*`` or a step counts as 0): a daily or hourly schedule's first tick."""
    minute, hour = (cron if isinstance(cron, str) else cron[0]).split()[:2]
    return dt.datetime(
        day.year, day.month, day.day, int(hour) if hour.isdigit() else 0, int(minute) if minute.isdigit() else 0,
        tzinfo=dt.UTC,
    )  # fmt: skip


def parquet_files_per_partition(parquet_root: Path) -> int:
    """The most visible Parquet files in one ``date=/symbol=/kind=`` folder."""
    most = 0
    for folder, _, files in os.walk(parquet_root):
        if Path(folder).name.startswith("kind="):
            most = max(most, sum(1 for name in files if name.endswith(".parquet") and not name.startswith(".")))
    return most


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--segments-per-day", type=int, default=1440)
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
    parser.add_argument("--ticks-per-day", type=int, default=4, help="sensor rounds per simulated day")
    parser.add_argument("--out", help="data root to keep (default: a temporary directory, removed at the end)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    with tempfile.TemporaryDirectory(prefix="soak-month-") as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        soak(root, args)


def soak(root: Path, args: argparse.Namespace) -> None:
    paths = DataPaths.from_root(root)
    os.environ.update({**BENCH_ENV, DATA_ROOT_ENV: str(root), DAGSTER_HOME_ENV: str(paths.dagster_home)})
    os.environ["HARVEST_SYMBOLS"] = args.symbols
    from assets.retention import run_history_retention, segment_retention  # after the environment is set
    from harvest_pipeline import retention
    from harvest_pipeline.definitions import defs

    ensure_dagster_home(paths)
    first_day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=args.days + 1)
    day_started_wall: dict[dt.date, float] = {}

    def run_config_for(job: str, now: dt.datetime) -> dict:
        if job == segment_retention.name:
            return {"ops": {"delete_expired_segments": {"config": {"now_ns": int(now.timestamp() * 1e9)}}}}
        if job == run_history_retention.name:
            keep_from = now.date() - dt.timedelta(seconds=retention.run_retention_seconds())
            before = day_started_wall.get(keep_from, min(day_started_wall.values()))  # none that old yet: no run
            return {"ops": {"delete_old_runs": {"config": {"finished_before": before}}}}
        return {}

    source = SegmentSource(paths, args.symbols.split(","))
    quiet = dg.DagsterInstance.from_config(str(paths.dagster_home))
    print(f"soak: {args.days} days x {args.segments_per_day} segments, {args.symbols}, data root {root}", flush=True)
    print("day  date        tick_ms  overhead_ms  runs  failed  home_MB  partitions  sealed  parquet/part  wall_s")
    rows: list[tuple] = []
    instigators: list[dict[str, float]] = []
    started_all = time.perf_counter()
    with quiet as instance:
        engine = Soak(defs, instance, paths, run_config_for)
        step_ns = DAY_NS // args.segments_per_day
        # The daemon ticks long before the first segment: this round gives every sensor its cursor, so day 1 is
        # measured in steady state like every other day, not with the cheaper first-tick paths.
        engine.tick_sensors(dt.datetime.combine(first_day, dt.time(), dt.UTC), DayFigures())
        for index in range(args.days):
            day = first_day + dt.timedelta(days=index)
            day_started_wall[day] = time.time()
            started = time.perf_counter()
            figures = DayFigures()
            day_ns = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()) * 10**9
            chunk = -(-args.segments_per_day // args.ticks_per_day)
            for first in range(0, args.segments_per_day, chunk):
                for i in range(first, min(first + chunk, args.segments_per_day)):
                    source.write(day_ns + i * step_ns)
                now = dt.datetime.fromtimestamp(
                    (day_ns + min(first + chunk, args.segments_per_day) * step_ns) / 1e9, dt.UTC
                )
                engine.tick_sensors(now, figures)
            engine.tick_schedules(day + dt.timedelta(days=1), figures)
            home_mb = directory_bytes(paths.dagster_home) / 1e6
            partitions = len(instance.get_dynamic_partitions(SEGMENT_PARTITIONS_NAME))
            sealed = len(segments.list_sealed_segments(paths.sealed_segments))
            row = (
                index + 1, day, median(figures.ticks_ms), median(figures.overheads_ms), figures.runs, figures.failed,
                home_mb, partitions, sealed, parquet_files_per_partition(paths.parquet), time.perf_counter() - started,
            )  # fmt: skip
            rows.append(row)
            instigators.append({name: median(times) for name, times in figures.instigator_ms.items()})
            print(
                "{:>3}  {}  {:7.0f}  {:11.0f}  {:4}  {:6}  {:7.1f}  {:10}  {:6}  {:12}  {:6.0f}".format(*row),
                flush=True,
            )
    report(rows, time.perf_counter() - started_all)
    report_instigators(instigators)


def report(rows: list[tuple], wall_s: float) -> None:
    """Last day / day 1 and storage growth per day, late vs early."""
    first, last = rows[0], rows[-1]
    for label, column in (("sensor tick time", 2), ("per-run overhead", 3)):
        ratio = last[column] / first[column] if first[column] else float("nan")
        verdict = "PASS" if ratio <= GOAL_RATIO else "FAIL"
        if len(rows) >= 6:  # the machine is shared: the same ratio over three days each end damps one noisy day
            steady = median([row[column] for row in rows[-3:]]) / median([row[column] for row in rows[:3]])
            verdict += f" (median of the last 3 days / first 3 days = {steady:.2f})"
        print(f"{label}: day {last[0]} {last[column]:.0f} ms / day 1 {first[column]:.0f} ms = {ratio:.2f} "
              f"(goal <= {GOAL_RATIO}) {verdict}")  # fmt: skip
    growth = [later[6] - earlier[6] for earlier, later in zip(rows, rows[1:], strict=False)]
    if len(rows) >= 20:
        early, late = statistics.mean(growth[6:12]), statistics.mean(growth[-6:])
        print(f"DAGSTER_HOME growth: {early:.2f} MB/day on days 8-13, {late:.2f} MB/day on days {len(rows) - 5}-"
              f"{len(rows)} (state that grew with history would grow faster late than early)")  # fmt: skip
    else:
        print(
            f"DAGSTER_HOME growth per day: {', '.join(f'{g:.2f}' for g in growth)} MB (too few days for steady state)"
        )
    print(f"total wall time {wall_s:.0f} s ({wall_s / len(rows):.0f} s per simulated day)")


def report_instigators(days: list[dict[str, float]]) -> None:
    """Median ms per round of each sensor and of the automation evaluation: first 3 days, last 3 days."""
    print("per instigator, median ms per round: first 3 days -> last 3 days")
    for name in sorted(days[0]):
        early = median([day[name] for day in days[:3] if name in day])
        late = median([day[name] for day in days[-3:] if name in day])
        print(f"  {name:<22} {early:8.1f} -> {late:8.1f}")


if __name__ == "__main__":
    main()

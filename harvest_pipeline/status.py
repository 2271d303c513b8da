"""``harvest status``: one screen on the pipeline's health.

Per-stream freshness (from the collector's /healthz), the last sealed segment, segments without a valid sidecar, the
compaction lag (segments sealed but not yet compacted) shown apart from segments whose compaction keeps failing, the
failed Dagster runs of the last 24 h (a run counts as recovered once a retry of it, a later run of the same partition,
or the compaction of all its segments succeeded), the completeness certificates of the last 3 UTC days (one line per
day x symbol partition), disk use and free space. Every section degrades to a clear
"unavailable" line instead of failing, because status is what an operator runs when something is already wrong.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from harvest_pipeline import segments
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments.discovery import inventory_sealed_segments
from harvest_pipeline.store.migration import move_legacy_layout

if TYPE_CHECKING:
    import dagster as dg

COMPACTION_MARKER_ASSET = "events"
"""Every compaction run materializes ``events`` for each segment it compacted, so its partitions mark 'compacted'."""
SEGMENT_PARTITIONS_NAME = "segments"
"""The dynamic partitions definition of segment compaction, one partition per sealed segment."""
FAILED_RUN_WINDOW_S = 24 * 3600
"""Failed runs older than this are history, not a status."""
MAX_LISTED = 10
CERTIFIED_DAYS = 3
"""Completed UTC days whose certificates the screen shows (today has none until it is consolidated)."""

# Dagster's documented run tags that harvest reads and writes. Dagster 1.13 exports no public constants for them, and
# its RunRequest takes no partition range argument: a range run is requested with the two range tags.
PARTITION_TAG = "dagster/partition"
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
ROOT_RUN_ID_TAG = "dagster/root_run_id"


@dataclass
class SegmentProgress:
    """Compaction state of the registered segment partitions, read from the Dagster instance."""

    registered: list[str]
    """Partition keys in registration order, the order a partition range follows."""
    compacted: set[str]
    failing: list[str]
    """Latest compaction failed and no run is working on them now, in registration order."""
    in_progress: set[str]

    def __post_init__(self) -> None:
        self.positions = {name: i for i, name in enumerate(self.registered)}

    def segments_of_run(self, tags: Mapping[str, str]) -> list[str]:
        """The segment partitions a run covered, from its partition tags ([] for any other run)."""
        start = tags.get(PARTITION_RANGE_START_TAG, tags.get(PARTITION_TAG))
        end = tags.get(PARTITION_RANGE_END_TAG, tags.get(PARTITION_TAG))
        if start not in self.positions or end not in self.positions:
            return []
        return self.registered[self.positions[start] : self.positions[end] + 1]


@dataclass
class FailedRun:
    """A failed Dagster run of the status window, and what (if anything) has made up for it since."""

    run_id: str
    job: str
    ended: float | None
    recovered_by: str | None


@dataclass
class DayCertificate:
    """The completeness certificate of one day x symbol, summed over its streams (None figures: no certificate)."""

    day: str
    symbol: str
    found: bool
    certified: bool = False
    trades: int = 0
    trades_rest: int = 0
    healed: int = 0
    declared: int = 0
    unexplained: int = 0
    book_share: float | None = None
    book_valid_share: float | None = None
    """Share of the day inside ``book_validity`` intervals (None: the day's book is not built)."""
    book_intervals: int = 0
    error: str | None = None

    def line(self) -> str:
        """One status line."""
        where = f"  {self.day} {self.symbol:<12}"
        if self.error is not None:
            return f"{where} certificate unreadable: {self.error}"
        if not self.found:
            return f"{where} no certificate yet"
        verdict = "certified" if self.certified else f"NOT CERTIFIED: {self.unexplained} unexplained hole(s)"
        book = "" if self.book_share is None else f"; book chain {100 * self.book_share:.1f} % of the day"
        if self.book_valid_share is not None:
            book += f"; book valid {100 * self.book_valid_share:.1f} % ({self.book_intervals} interval(s))"
        return (
            f"{where} {verdict}; trades {self.trades:,} ({self.trades_rest:,} from REST); holes healed "
            f"{self.healed}, declared {self.declared}{book}"
        )


def read_day_certificate(parquet_root: Path, day: date, symbol: str) -> DayCertificate:
    """The certificate of ``day`` x ``symbol`` as one summary (never raises: status must always render)."""
    import pyarrow.parquet as pq

    from harvest_pipeline.completeness import certificate_path

    summary = DayCertificate(day.isoformat(), symbol, found=False)
    path = certificate_path(parquet_root, day, symbol)
    if not path.exists():
        return summary
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - a broken file is a status line, not a crash
        summary.error = str(exc)
        return summary
    summary.found = True
    _read_book_validity(summary, parquet_root, day, symbol)
    summary.certified = all(row["certified"] for row in rows)
    for row in rows:
        if row["sequence"] == "agg_trade_id":
            summary.trades += row["rows"]
            summary.trades_rest += row["rows_rest"]
        if row["book_chain_share"] is not None:
            summary.book_share = row["book_chain_share"]
        summary.healed += row["healed_holes"]
        summary.declared += row["declared_holes"]
        summary.unexplained += row["unexplained_holes"]
    return summary


def read_partition_certificate(parquet: Path, day: date, partition_key: str) -> DayCertificate:
    """``read_day_certificate`` of a symbol partition (``BTCUSDT``, ``spot:BTCUSDT``), in its market's root; the
    summary names the partition."""
    from harvest_pipeline.markets import split_partition_key

    market, symbol = split_partition_key(partition_key)
    summary = read_day_certificate(market.parquet_root(parquet), day, symbol)
    return dataclasses.replace(summary, symbol=partition_key)


def _read_book_validity(summary: DayCertificate, parquet_root: Path, day: date, symbol: str) -> None:
    """Add how much of the day the validated book covers (nothing when its ``book_validity`` is absent)."""
    import pyarrow.parquet as pq

    from harvest_pipeline.book import book_file
    from harvest_pipeline.book.replay import MS_PER_DAY

    path = book_file(parquet_root, day, symbol, "book_validity")
    if not path.exists():
        return
    intervals = pq.read_table(path, columns=["from_time_ms", "to_time_ms"]).to_pylist()
    summary.book_intervals = len(intervals)
    summary.book_valid_share = sum(i["to_time_ms"] - i["from_time_ms"] for i in intervals) / MS_PER_DAY


@dataclass
class PipelineStatus:
    """Everything ``harvest status`` shows, gathered without printing (tests read it)."""

    health: dict[str, Any] | None
    health_error: str | None
    sealed_count: int
    last_sealed: segments.SegmentMeta | None
    sidecar_problems: list[str]
    lagging: list[str]
    """Sealed with a valid sidecar, not compacted yet and not failing, by name (oldest first)."""
    failing: list[str]
    """Segment partitions whose latest compaction failed (retried by the ``compaction_retries`` sensor)."""
    compaction_error: str | None
    failed_runs: list[FailedRun]
    disk_used: dict[str, int]
    disk_free: int
    certificates: list[DayCertificate]

    @property
    def unrecovered_runs(self) -> list[FailedRun]:
        """Failed runs nothing has made up for."""
        return [run for run in self.failed_runs if run.recovered_by is None]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``status`` subcommand."""
    parser = subparsers.add_parser("status", help="per-stream freshness, segments, compaction lag, failed runs, disk")
    parser.add_argument("--data", help="data root (default $HARVEST_DATA_ROOT or ./data)")
    parser.add_argument("--metrics-url", help="collector base URL (default: from up-state.json, else :9108)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(run=run)


def collector_health(base_url: str, timeout_s: float = 3.0) -> dict[str, Any]:
    """The collector's /healthz report (served with 503 when degraded, which is still a report)."""
    try:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=timeout_s) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return orjson.loads(exc.read())


def directory_bytes(path: Path) -> int:
    """Total size of the files below ``path`` (0 if it does not exist)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


def segment_progress(instance: dg.DagsterInstance) -> SegmentProgress:
    """Which registered segments are compacted, failing or being worked on (one status query for all of them)."""
    import dagster as dg

    registered = list(instance.get_dynamic_partitions(SEGMENT_PARTITIONS_NAME))
    statuses = instance.get_status_by_partition(
        dg.AssetKey(COMPACTION_MARKER_ASSET), registered, dg.DynamicPartitionsDefinition(name=SEGMENT_PARTITIONS_NAME)
    )
    status_of = statuses or {}
    return SegmentProgress(
        registered=registered,
        compacted={k for k in registered if status_of.get(k) == dg.AssetPartitionStatus.MATERIALIZED},
        failing=[k for k in registered if status_of.get(k) == dg.AssetPartitionStatus.FAILED],
        in_progress={k for k in registered if status_of.get(k) == dg.AssetPartitionStatus.IN_PROGRESS},
    )


def judge_failed_runs(
    instance: dg.DagsterInstance, progress: SegmentProgress, now: float, window_s: float = FAILED_RUN_WINDOW_S
) -> list[FailedRun]:
    """Runs that failed within ``window_s`` before ``now`` (newest first), each marked recovered or not."""
    import dagster as dg

    since = datetime.fromtimestamp(now - window_s, tz=UTC)
    records = instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], updated_after=since), limit=200
    )
    return [
        FailedRun(r.dagster_run.run_id, r.dagster_run.job_name, r.end_time, run_recovery(instance, r, progress))
        for r in records
    ]


def run_recovery(instance: dg.DagsterInstance, record: dg.RunRecord, progress: SegmentProgress) -> str | None:
    """Why a failed run no longer needs attention, or None when nothing has made up for it."""
    import dagster as dg

    run = record.dagster_run
    succeeded = [dg.DagsterRunStatus.SUCCESS]
    root = run.tags.get(ROOT_RUN_ID_TAG, run.run_id)
    retries = instance.get_run_records(dg.RunsFilter(tags={ROOT_RUN_ID_TAG: root}, statuses=succeeded), limit=1)
    if retries:
        return f"retry {retries[0].dagster_run.run_id[:8]} succeeded"
    covered = progress.segments_of_run(run.tags)
    if covered and all(name in progress.compacted for name in covered):
        return f"its {len(covered)} segment(s) have been compacted since"
    partition_tags = {
        key: value
        for key, value in run.tags.items()
        if key in (PARTITION_TAG, PARTITION_RANGE_START_TAG, PARTITION_RANGE_END_TAG)
    }
    later = instance.get_run_records(
        dg.RunsFilter(
            job_name=run.job_name, statuses=succeeded, tags=partition_tags, created_after=record.create_timestamp
        ),
        limit=1,
    )
    if later:
        scope = "partition" if partition_tags else "job"
        return f"later run {later[0].dagster_run.run_id[:8]} of the same {scope} succeeded"
    return None


def _open_instance(dagster_home: Path) -> dg.DagsterInstance:
    """The instance of ``$DAGSTER_HOME`` if set, else of the installation's ``dagster_home``; opened without
    touching the process environment (a caller's later instances must not inherit this one)."""
    import dagster as dg

    return dg.DagsterInstance.from_config(os.environ.get("DAGSTER_HOME") or str(dagster_home))


def gather_status(
    paths: DataPaths, metrics_url: str, now: float | None = None, symbols: tuple[str, ...] | None = None
) -> PipelineStatus:
    """Collect every section of the status screen (certificates of ``symbols``, default the instance's symbol
    partitions, or the symbols with Parquet on disk when the instance is unavailable)."""
    from harvest_pipeline.symbol_partitions import recorded_partitions, registered_symbols

    now = now or time.time()
    health, health_error = None, None
    try:
        health = collector_health(metrics_url)
    except OSError as exc:
        health_error = f"collector not answering at {metrics_url} ({exc})"
    inventory = inventory_sealed_segments(paths.sealed_segments)
    problems = [problem.describe() for problem in inventory.problems]
    lagging, failing, compaction_error, failures = [], [], None, []
    try:
        with _open_instance(paths.dagster_home) as instance:
            progress = segment_progress(instance)
            failures = judge_failed_runs(instance, progress, now)
            partitions = registered_symbols(instance)
        failing = progress.failing
        skip = progress.compacted | set(failing)
        lagging = [segment.name for segment, _ in inventory.valid if segment.name not in skip]
    except Exception as exc:  # noqa: BLE001 - any instance problem is reported, not raised
        compaction_error = f"Dagster instance at {paths.dagster_home} unavailable: {exc}"
        partitions = list(recorded_partitions(paths.parquet))
    if symbols is None:
        symbols = tuple(sorted(partitions))
    used = {area: directory_bytes(getattr(paths, area)) for area in ("segments", "parquet", "quarantine")}
    free = shutil.disk_usage(paths.root if paths.root.exists() else Path.cwd()).free
    last_sealed = inventory.valid[-1][1] if inventory.valid else None
    sealed_count = len(inventory.valid) + len(problems)
    today = datetime.fromtimestamp(now, tz=UTC).date()
    days = [today - timedelta(days=back) for back in range(1, CERTIFIED_DAYS + 1)]
    move_legacy_layout(paths.parquet)
    certificates = [read_partition_certificate(paths.parquet, day, key) for day in days for key in symbols]
    return PipelineStatus(
        health, health_error, sealed_count, last_sealed, problems, lagging, failing, compaction_error, failures, used,
        free, certificates,
    )  # fmt: skip


def _listed(names: list[str]) -> list[str]:
    more = [f"  ... and {len(names) - MAX_LISTED} more"] if len(names) > MAX_LISTED else []
    return [f"  {name}" for name in names[:MAX_LISTED]] + more


def render_status(status: PipelineStatus, now: float | None = None) -> str:
    """The one-screen text of a status."""
    now = now or time.time()
    lines = ["streams:"]
    if status.health is None:
        lines.append(f"  unavailable: {status.health_error}")
    else:
        lines[0] = f"streams: (collector {status.health.get('status')})"
        for name, stream in sorted(status.health.get("streams", {}).items()):
            age = stream.get("last_frame_age_s")
            lines.append(
                f"  {name:<28} {stream.get('state'):<10} last frame {'-' if age is None else f'{age:.1f} s'} ago"
            )
        writer = status.health.get("writer", {})
        lines.append(
            f"  writer: {writer.get('state')}, queue {writer.get('queue_lines')} lines, "
            f"dropped {writer.get('dropped') or 0}, unsealed {len(writer.get('unsealed') or [])}"
        )
        books = status.health.get("books_synced") or {}
        if books:
            lines.append("  books: " + ", ".join(f"{s} {'synced' if ok else 'NO SNAPSHOT'}" for s, ok in books.items()))
        for problem in status.health.get("problems", []):
            lines.append(f"  problem: {problem}")
    if status.sealed_count == 0:
        lines.append("segments: none sealed yet")
    elif status.last_sealed is None:
        lines.append(f"segments: {status.sealed_count} sealed, none with a valid sidecar")
    else:
        age = now - status.last_sealed.sealed_at_ns / 1e9
        lines.append(f"segments: {status.sealed_count} sealed; last {status.last_sealed.name} ({age:.0f} s ago)")
    if status.sidecar_problems:
        lines.append(
            f"segments without a valid sidecar: {len(status.sidecar_problems)} "
            "(not compacted, never deleted by retention; restore or remove the sidecar)"
        )
        lines += _listed(status.sidecar_problems)
    lines += _compaction_lines(status)
    if status.certificates:
        lines.append(f"completeness (last {CERTIFIED_DAYS} UTC days):")
        lines += [certificate.line() for certificate in status.certificates]
    used = ", ".join(f"{area} {size / 1e6:.1f} MB" for area, size in status.disk_used.items())
    lines.append(f"disk: {used}; free {status.disk_free / 1e9:.1f} GB")
    return "\n".join(lines)


def _compaction_lines(status: PipelineStatus) -> list[str]:
    if status.compaction_error:
        return [f"compaction: {status.compaction_error}"]
    oldest = f", oldest {status.lagging[0]}" if status.lagging else ""
    lines = [f"compaction lag: {len(status.lagging)} segment(s) sealed but not compacted{oldest}"]
    if status.failing:
        lines.append(
            f"compaction failing: {len(status.failing)} segment(s) whose last compaction failed "
            "(retried automatically with backoff, then given up; see the compaction_retries sensor)"
        )
        lines += _listed(status.failing)
    unrecovered = status.unrecovered_runs
    recovered = len(status.failed_runs) - len(unrecovered)
    hours = FAILED_RUN_WINDOW_S / 3600
    lines.append(
        f"failed runs: {len(unrecovered)} not recovered in the last {hours:.0f} h "
        f"(and {recovered} recovered by a retry or a later run)"
    )
    for failed in unrecovered[:MAX_LISTED]:
        when = datetime.fromtimestamp(failed.ended, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if failed.ended else "?"
        lines.append(f"  {failed.run_id[:8]} {failed.job} {when}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Handler of ``harvest status``: prints the screen; exit 1 when something needs attention."""
    paths = DataPaths.from_env(args.data)
    metrics_url = args.metrics_url
    state_file = paths.root / "up-state.json"
    if metrics_url is None and state_file.exists():
        metrics_url = orjson.loads(state_file.read_bytes())["metrics_url"].removesuffix("/metrics")
    status = gather_status(paths, metrics_url or "http://127.0.0.1:9108")
    if args.json:
        print(orjson.dumps(status, default=lambda o: o.__dict__, option=orjson.OPT_INDENT_2).decode())
    else:
        print(render_status(status))
    healthy = status.health is not None and status.health.get("status") == "ok"
    uncertified = [c for c in status.certificates if c.found and not c.certified]
    attention = (
        status.unrecovered_runs or status.failing or status.sidecar_problems or status.compaction_error or uncertified
    )
    return 0 if healthy and not attention else 1

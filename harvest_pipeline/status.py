"""``harvest status``: one screen on the pipeline's health.

Per-stream freshness (from the collector's /healthz), the last sealed segment, the compaction lag (segments sealed but
not yet compacted), failed Dagster runs, disk use and free space. Every section degrades to a clear "unavailable"
line instead of failing, because status is what an operator runs when something is already wrong.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from harvest_pipeline import segments
from harvest_pipeline.paths import DataPaths

COMPACTION_MARKER_ASSET = "events"
"""Every compaction run materializes ``events`` for each segment it compacted, so its partitions mark 'compacted'."""


@dataclass
class PipelineStatus:
    """Everything ``harvest status`` shows, gathered without printing (tests read it)."""

    health: dict[str, Any] | None
    health_error: str | None
    sealed_count: int
    last_sealed: segments.SegmentMeta | None
    uncompacted: list[str]
    compaction_error: str | None
    failed_runs: list[tuple[str, str, float | None]]
    disk_used: dict[str, int]
    disk_free: int


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


def compacted_segments(dagster_home: Path) -> set[str]:
    """Segment partitions whose compaction has succeeded, read from the Dagster instance."""
    import dagster as dg

    os.environ.setdefault("DAGSTER_HOME", str(dagster_home))
    with dg.DagsterInstance.get() as instance:
        return set(instance.get_materialized_partitions(dg.AssetKey(COMPACTION_MARKER_ASSET)))


def failed_runs(dagster_home: Path, limit: int = 10) -> list[tuple[str, str, float | None]]:
    """The most recent failed runs: (run id, job name, end time)."""
    import dagster as dg

    os.environ.setdefault("DAGSTER_HOME", str(dagster_home))
    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]), limit=limit)
        return [(r.dagster_run.run_id, r.dagster_run.job_name, r.end_time) for r in records]


def gather_status(paths: DataPaths, metrics_url: str) -> PipelineStatus:
    """Collect every section of the status screen."""
    health, health_error = None, None
    try:
        health = collector_health(metrics_url)
    except OSError as exc:
        health_error = f"collector not answering at {metrics_url} ({exc})"
    sealed = segments.list_sealed_segments(paths.sealed_segments)
    last_sealed = sealed[-1].load_meta() if sealed else None
    uncompacted, compaction_error, failures = [], None, []
    try:
        done = compacted_segments(paths.dagster_home)
        uncompacted = [s.name for s in sealed if s.name not in done]
        failures = failed_runs(paths.dagster_home)
    except Exception as exc:  # noqa: BLE001 - any instance problem is reported, not raised
        compaction_error = f"Dagster instance at {paths.dagster_home} unavailable: {exc}"
    used = {area: directory_bytes(getattr(paths, area)) for area in ("segments", "parquet", "quarantine")}
    free = shutil.disk_usage(paths.root if paths.root.exists() else Path.cwd()).free
    return PipelineStatus(
        health, health_error, len(sealed), last_sealed, uncompacted, compaction_error, failures, used, free
    )


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
        lines.append(f"  writer: queue {writer.get('queue_lines')} lines, dropped {writer.get('dropped') or 0}")
    if status.last_sealed is None:
        lines.append("segments: none sealed yet")
    else:
        age = now - status.last_sealed.sealed_at_ns / 1e9
        lines.append(f"segments: {status.sealed_count} sealed; last {status.last_sealed.name} ({age:.0f} s ago)")
    if status.compaction_error:
        lines.append(f"compaction: {status.compaction_error}")
    else:
        oldest = f", oldest {status.uncompacted[0]}" if status.uncompacted else ""
        lines.append(f"compaction lag: {len(status.uncompacted)} segment(s) sealed but not compacted{oldest}")
        lines.append(f"failed runs: {len(status.failed_runs)}")
        for run_id, job, ended in status.failed_runs:
            when = datetime.fromtimestamp(ended, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ended else "?"
            lines.append(f"  {run_id[:8]} {job} {when}")
    used = ", ".join(f"{area} {size / 1e6:.1f} MB" for area, size in status.disk_used.items())
    lines.append(f"disk: {used}; free {status.disk_free / 1e9:.1f} GB")
    return "\n".join(lines)


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
    healthy = status.health is not None and status.health.get("status") == "ok" and not status.failed_runs
    return 0 if healthy else 1

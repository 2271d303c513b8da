"""Retention: raw segments and their partitions after compaction, and Dagster's run history, in bounded steps.

Parquet is the product; sealed segments are the evidence it was built from. A segment is kept while it is not yet
compacted (however old) and for ``retention_s`` after sealing even when it is, so a re-run or a bug fix in compaction
can still rebuild recent data from raw frames. Deleting a segment also deletes its ``segments`` partition, after the
files are gone, so the partitions Dagster holds follow the segments on disk, not the whole history.

Every instance query here is bounded by its arguments, never by history: whether a segment is compacted is asked
for the candidates only (those sealed before the cutoff), ``QUERY_BATCH`` partitions at a time; orphaned partitions
(files removed by hand) are looked for among the ``ORPHAN_SCAN`` oldest registered partitions; old runs are deleted
``RUN_BATCH`` at a time, at most ``MAX_RUNS_PER_CALL`` per call.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from harvest_pipeline.segments import SealedSegment, SegmentMeta, sealed_path
from harvest_pipeline.status import COMPACTION_MARKER_ASSET, SEGMENT_PARTITIONS_NAME

if TYPE_CHECKING:
    import dagster as dg

DEFAULT_RETENTION_DAYS = 7.0
RETENTION_ENV = "HARVEST_SEGMENT_RETENTION_DAYS"
DEFAULT_RUN_RETENTION_DAYS = 30.0
RUN_RETENTION_ENV = "HARVEST_RUN_RETENTION_DAYS"
RUN_MARGIN_DAYS = 1.0
"""Runs are kept at least this long past segment retention: a run's events are the proof a segment was compacted."""
QUERY_BATCH = 500
"""Partitions per event-log query (an ``IN`` list SQLite and PostgreSQL both take comfortably)."""
ORPHAN_SCAN = 2000
"""Oldest registered partitions checked per retention run for segment files that vanished by other means."""
RUN_BATCH = 100
MAX_RUNS_PER_CALL = 5000
"""Runs deleted per run-history call; a longer backlog (a first run on an old instance) goes over the next days."""
DAY_S = 86400


def retention_seconds() -> float:
    """The configured retention of compacted sealed segments (``HARVEST_SEGMENT_RETENTION_DAYS``, default 7 days)."""
    return float(os.environ.get(RETENTION_ENV, DEFAULT_RETENTION_DAYS)) * DAY_S


def run_retention_seconds() -> float:
    """How long finished runs are kept (``HARVEST_RUN_RETENTION_DAYS``, default 30), never less than segment
    retention plus ``RUN_MARGIN_DAYS``: deleting a run deletes the materializations retention relies on."""
    configured = float(os.environ.get(RUN_RETENTION_ENV, DEFAULT_RUN_RETENTION_DAYS)) * DAY_S
    return max(configured, retention_seconds() + RUN_MARGIN_DAYS * DAY_S)


@dataclass(frozen=True)
class RetentionDecision:
    """Which segments to delete and how many were kept for which reason."""

    delete: list[SealedSegment]
    kept_uncompacted: int
    kept_recent: int


def sealed_before(valid: Sequence[tuple[SealedSegment, SegmentMeta]], cutoff_ns: int) -> list[SealedSegment]:
    """The segments sealed at or before ``cutoff_ns``: the only ones whose compaction needs asking about."""
    return [segment for segment, meta in valid if meta.sealed_at_ns <= cutoff_ns]


def select_expired(total: int, candidates: list[SealedSegment], compacted: set[str]) -> RetentionDecision:
    """Of ``total`` valid segments, delete the ``candidates`` (sealed before the cutoff) that are compacted."""
    delete = [segment for segment in candidates if segment.name in compacted]
    return RetentionDecision(delete, len(candidates) - len(delete), total - len(candidates))


def delete_segment(segment: SealedSegment) -> int:
    """Remove a sealed segment: data file first (it disappears from listings at once), then its sidecar."""
    size = segment.path.stat().st_size if segment.path.exists() else 0
    segment.path.unlink(missing_ok=True)
    segment.meta_path.unlink(missing_ok=True)
    return size


def batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def opened_before(name: str, cutoff_ns: int) -> bool:
    """Whether a segment name's open time (its first 22 characters, UTC) lies before ``cutoff_ns``."""
    try:
        opened = datetime.strptime(name[:22], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return False
    return opened.timestamp() * 1e9 < cutoff_ns


def compacted_among(instance: dg.DagsterInstance, names: Sequence[str]) -> set[str]:
    """The segments among ``names`` whose compaction materialized: indexed event-log reads by partition, in batches
    of ``QUERY_BATCH``, so the cost follows ``len(names)``, not the number of partitions ever compacted."""
    import dagster as dg

    key = dg.AssetKey(COMPACTION_MARKER_ASSET)
    compacted: set[str] = set()
    for batch in batches(names, QUERY_BATCH):
        cursor = None
        while True:
            result = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=list(batch)), limit=QUERY_BATCH, cursor=cursor
            )
            compacted.update(r.partition_key for r in result.records if r.partition_key is not None)
            if not result.has_more:
                break
            cursor = result.cursor
    return compacted


def delete_partitions(instance: dg.DagsterInstance, names: Sequence[str]) -> None:
    """Drop the ``segments`` partitions of deleted segments (one indexed delete each)."""
    for name in names:
        instance.delete_dynamic_partition(SEGMENT_PARTITIONS_NAME, name)


def orphaned_partitions(instance: dg.DagsterInstance, sealed_root: Path, cutoff_ns: int) -> list[str]:
    """Compacted partitions among the ``ORPHAN_SCAN`` oldest registered ones whose segment opened before the cutoff
    and whose data file is gone (removed by an operator, or a deletion interrupted before its partition went)."""
    oldest = instance.get_paginated_dynamic_partitions(SEGMENT_PARTITIONS_NAME, limit=ORPHAN_SCAN, ascending=True)
    gone = [
        name
        for name in oldest.results
        if opened_before(name, cutoff_ns) and not sealed_path(sealed_root, name).exists()
    ]
    return sorted(compacted_among(instance, gone))


def delete_finished_runs(
    instance: dg.DagsterInstance, finished_before: datetime, limit: int = MAX_RUNS_PER_CALL
) -> int:
    """Delete up to ``limit`` finished runs (success, failure, canceled) last updated before ``finished_before``,
    oldest first, ``RUN_BATCH`` at a time, with their event logs; queued and running runs are never touched."""
    import dagster as dg

    finished = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
    deleted = 0
    while deleted < limit:
        records = instance.get_run_records(
            dg.RunsFilter(statuses=finished, updated_before=finished_before),
            limit=min(RUN_BATCH, limit - deleted),
            ascending=True,
        )
        for record in records:
            delete_run_with_files(instance, record.dagster_run.run_id)
        deleted += len(records)
        if len(records) < RUN_BATCH:
            break
    return deleted


def delete_run_with_files(instance: dg.DagsterInstance, run_id: str) -> None:
    """``delete_run`` plus the two files it leaves behind on a local instance: the run's captured compute logs
    (``storage/<run_id>/``) and, with the SQLite event log (harvest's default), the run's emptied event-log shard
    (``history/runs/<run_id>.db``, 200 kB even when empty)."""
    instance.delete_run(run_id)
    instance.compute_log_manager.delete_logs(prefix=[run_id])
    shard_path = getattr(instance.event_log_storage, "path_for_shard", None)
    if shard_path is not None:
        Path(shard_path(run_id)).unlink(missing_ok=True)

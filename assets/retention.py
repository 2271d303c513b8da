"""Retention jobs: ``segment_retention`` (raw segments and their partitions) and ``run_history_retention``.

A segment whose sidecar is missing or unreadable is never deleted (its seal time is unknown and it cannot have been
reconciled): the job skips it with a warning naming it and goes on with the others. Both jobs read the wall clock
unless their config names another "now" (the month-long soak, ``bench/soak_month.py``, runs a simulated clock).
"""

import time
from datetime import UTC, datetime

import dagster as dg

from assets.resources import HarvestStorage
from harvest_pipeline import retention
from harvest_pipeline.segments.discovery import inventory_sealed_segments

MAX_LISTED = 50


class SegmentRetentionConfig(dg.Config):
    """Optional clock override; production leaves it unset and uses the wall clock."""

    now_ns: int | None = None
    """The time retention counts from, ns since epoch (a simulated clock in benchmarks and tests)."""


class RunHistoryConfig(dg.Config):
    """Optional clock override; production leaves it unset and uses the wall clock."""

    finished_before: float | None = None
    """Unix time: runs finished before it are deleted. Default: now minus ``retention.run_retention_seconds()``."""


@dg.op(description="Delete sealed segments (and their partitions) whose compaction succeeded and retention passed.")
def delete_expired_segments(
    context: dg.OpExecutionContext, config: SegmentRetentionConfig, storage: HarvestStorage
) -> dg.Output[int]:
    """Ask the instance about the segments sealed before the cutoff only, delete, and report what was kept and why."""
    sealed_root = storage.paths().sealed_segments
    inventory = inventory_sealed_segments(sealed_root)
    for problem in inventory.problems:
        context.log.warning(f"retention skips segment {problem.describe()}; restore or remove the sidecar")
    cutoff_ns = (config.now_ns or time.time_ns()) - int(retention.retention_seconds() * 1e9)
    candidates = retention.sealed_before(inventory.valid, cutoff_ns)
    compacted = retention.compacted_among(context.instance, [segment.name for segment in candidates])
    decision = retention.select_expired(len(inventory.valid), candidates, compacted)
    freed = sum(retention.delete_segment(segment) for segment in decision.delete)
    retention.delete_partitions(context.instance, [segment.name for segment in decision.delete])
    orphans = retention.orphaned_partitions(context.instance, sealed_root, cutoff_ns)
    retention.delete_partitions(context.instance, orphans)
    context.log.info(
        f"deleted {len(decision.delete)} segment(s) and their partitions, {freed / 1e6:.1f} MB, and "
        f"{len(orphans)} partition(s) whose files were already gone; kept {decision.kept_uncompacted} not yet "
        f"compacted, {decision.kept_recent} within retention and {len(inventory.problems)} without a valid sidecar"
    )
    return dg.Output(
        len(decision.delete),
        metadata={
            "deleted": len(decision.delete),
            "freed_bytes": freed,
            "orphaned_partitions_deleted": len(orphans),
            "kept_uncompacted": decision.kept_uncompacted,
            "kept_recent": decision.kept_recent,
            "kept_without_valid_sidecar": len(inventory.problems),
            "without_valid_sidecar": dg.MetadataValue.json([p.describe() for p in inventory.problems[:MAX_LISTED]]),
        },
    )


@dg.job(description="Delete raw segments and their partitions only after compaction succeeded and retention passed.")
def segment_retention() -> None:
    """One op: the deletion."""
    delete_expired_segments()


@dg.op(description="Delete finished runs (and their event logs) older than HARVEST_RUN_RETENTION_DAYS.")
def delete_old_runs(context: dg.OpExecutionContext, config: RunHistoryConfig) -> dg.Output[int]:
    """Delete finished runs past the run retention, oldest first, in bounded batches; in-progress runs stay."""
    before = config.finished_before or time.time() - retention.run_retention_seconds()
    deleted = retention.delete_finished_runs(context.instance, datetime.fromtimestamp(before, tz=UTC))
    context.log.info(f"deleted {deleted} finished run(s) last updated before {datetime.fromtimestamp(before, UTC)}")
    return dg.Output(deleted, metadata={"deleted_runs": deleted, "finished_before": before})


@dg.job(description="Keep Dagster's run history bounded: delete finished runs past HARVEST_RUN_RETENTION_DAYS.")
def run_history_retention() -> None:
    """One op: the deletion."""
    delete_old_runs()


RETENTION_JOBS = [segment_retention, run_history_retention]

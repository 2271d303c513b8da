"""The ``segment_retention`` job: deletes compacted sealed segments past their retention period.

A segment whose sidecar is missing or unreadable is never deleted (its seal time is unknown and it cannot have been
reconciled): the job skips it with a warning naming it and goes on with the others.
"""

import time

import dagster as dg

from assets.resources import HarvestStorage
from harvest_pipeline import retention
from harvest_pipeline.segments.discovery import inventory_sealed_segments
from harvest_pipeline.status import COMPACTION_MARKER_ASSET

MAX_LISTED = 50


@dg.op(description="Delete sealed segments whose compaction succeeded and whose retention period has passed.")
def delete_expired_segments(context: dg.OpExecutionContext, storage: HarvestStorage) -> dg.Output[int]:
    """Decide from the instance's compaction record, delete, and report what was kept and why."""
    inventory = inventory_sealed_segments(storage.paths().sealed_segments)
    for problem in inventory.problems:
        context.log.warning(f"retention skips segment {problem.describe()}; restore or remove the sidecar")
    sealed = [segment for segment, _ in inventory.valid]
    compacted = set(context.instance.get_materialized_partitions(dg.AssetKey(COMPACTION_MARKER_ASSET)))
    decision = retention.select_expired(sealed, compacted, time.time_ns(), retention.retention_seconds())
    freed = sum(retention.delete_segment(segment) for segment in decision.delete)
    context.log.info(
        f"deleted {len(decision.delete)} segment(s), {freed / 1e6:.1f} MB; kept {decision.kept_uncompacted} "
        f"not yet compacted, {decision.kept_recent} within retention and {len(inventory.problems)} without a valid "
        "sidecar"
    )
    return dg.Output(
        len(decision.delete),
        metadata={
            "deleted": len(decision.delete),
            "freed_bytes": freed,
            "kept_uncompacted": decision.kept_uncompacted,
            "kept_recent": decision.kept_recent,
            "kept_without_valid_sidecar": len(inventory.problems),
            "without_valid_sidecar": dg.MetadataValue.json([p.describe() for p in inventory.problems[:MAX_LISTED]]),
        },
    )


@dg.job(description="Delete raw segments only after compaction succeeded and the retention period passed.")
def segment_retention() -> None:
    """One op: the deletion."""
    delete_expired_segments()

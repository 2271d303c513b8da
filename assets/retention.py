"""The ``segment_retention`` job: deletes compacted sealed segments past their retention period."""

import time

import dagster as dg

from assets.resources import HarvestStorage
from harvest_pipeline import retention, segments
from harvest_pipeline.status import COMPACTION_MARKER_ASSET


@dg.op(description="Delete sealed segments whose compaction succeeded and whose retention period has passed.")
def delete_expired_segments(context: dg.OpExecutionContext, storage: HarvestStorage) -> dg.Output[int]:
    """Decide from the instance's compaction record, delete, and report what was kept and why."""
    sealed = segments.list_sealed_segments(storage.paths().sealed_segments)
    compacted = set(context.instance.get_materialized_partitions(dg.AssetKey(COMPACTION_MARKER_ASSET)))
    decision = retention.select_expired(sealed, compacted, time.time_ns(), retention.retention_seconds())
    freed = sum(retention.delete_segment(segment) for segment in decision.delete)
    context.log.info(
        f"deleted {len(decision.delete)} segment(s), {freed / 1e6:.1f} MB; kept {decision.kept_uncompacted} "
        f"not yet compacted and {decision.kept_recent} within retention"
    )
    return dg.Output(
        len(decision.delete),
        metadata={
            "deleted": len(decision.delete),
            "freed_bytes": freed,
            "kept_uncompacted": decision.kept_uncompacted,
            "kept_recent": decision.kept_recent,
        },
    )


@dg.job(description="Delete raw segments only after compaction succeeded and the retention period passed.")
def segment_retention() -> None:
    """One op: the deletion."""
    delete_expired_segments()

"""Sealed segments -> date/symbol/kind Parquet: pure functions over paths, no Dagster (see docs/compaction.md)."""

from harvest_pipeline.compaction.segment import (
    DATA_KINDS,
    CompactionReport,
    Reconciliation,
    compact_segment,
    quarantine_path,
    reconcile,
)
from harvest_pipeline.compaction.sidecar import SegmentUnreadable

__all__ = [
    "DATA_KINDS",
    "CompactionReport",
    "Reconciliation",
    "SegmentUnreadable",
    "compact_segment",
    "quarantine_path",
    "reconcile",
]

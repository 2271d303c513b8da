"""Retention of sealed segments: delete raw JSONL only after its compaction succeeded and the retention period passed.

Parquet is the product; sealed segments are the evidence it was built from. A segment is kept while it is not yet
compacted (however old) and for ``retention_s`` after sealing even when it is, so a re-run or a bug fix in compaction
can still rebuild recent data from raw frames.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from harvest_pipeline.segments import SealedSegment

DEFAULT_RETENTION_DAYS = 7.0
RETENTION_ENV = "HARVEST_SEGMENT_RETENTION_DAYS"


def retention_seconds() -> float:
    """The configured retention of compacted sealed segments (``HARVEST_SEGMENT_RETENTION_DAYS``, default 7 days)."""
    return float(os.environ.get(RETENTION_ENV, DEFAULT_RETENTION_DAYS)) * 86400


@dataclass(frozen=True)
class RetentionDecision:
    """Which segments to delete and how many were kept for which reason."""

    delete: list[SealedSegment]
    kept_uncompacted: int
    kept_recent: int


def select_expired(
    sealed: list[SealedSegment], compacted: set[str], now_ns: int, retention_s: float
) -> RetentionDecision:
    """Segments that are compacted and were sealed more than ``retention_s`` ago; everything else is kept."""
    delete, uncompacted, recent = [], 0, 0
    cutoff_ns = now_ns - int(retention_s * 1e9)
    for segment in sealed:
        if segment.name not in compacted:
            uncompacted += 1
        elif segment.load_meta().sealed_at_ns > cutoff_ns:
            recent += 1
        else:
            delete.append(segment)
    return RetentionDecision(delete, uncompacted, recent)


def delete_segment(segment: SealedSegment) -> int:
    """Remove a sealed segment: data file first (it disappears from listings at once), then its sidecar."""
    size = segment.path.stat().st_size if segment.path.exists() else 0
    segment.path.unlink(missing_ok=True)
    segment.meta_path.unlink(missing_ok=True)
    return size

"""Segments with real market traffic, registered as partitions and compacted by the real asset on a test instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from assets.compaction import SEGMENT_PARTITIONS, raw_market_data
from assets.resources import HarvestStorage
from harvest_pipeline import segments
from tests.compaction.frames import MS, SegmentBuilder, TrafficMix

START_MS = 1_767_225_600_000
"""2026-01-01 00:00 UTC."""


def write_registered_segments(
    root: Path, instance: dg.DagsterInstance, count: int, start_ms: int = START_MS
) -> list[str]:
    """``count`` sealed segments of mixed traffic one second apart, registered as segment partitions."""
    mix = TrafficMix(start_ms=start_ms)
    names = []
    for index in range(count):
        opened_ms = start_ms + index * 1000
        builder = SegmentBuilder(root, opened_at_ns=opened_ms * MS)
        for stream, raw, event_ms in mix.frames(20):
            builder.frame(stream, raw, event_ms + 3)
        names.append(builder.seal(segments.segment_name(opened_ms * MS, "test", "b00t", index + 1)).name)
    instance.add_dynamic_partitions(SEGMENT_PARTITIONS.name, names)
    return names


def compact(root: Path, instance: dg.DagsterInstance, request: dg.RunRequest | None = None, name: str | None = None):
    """Run compaction as a run request asks (its range tags) or for one segment; True if the run succeeded."""
    outcome = dg.materialize(
        [raw_market_data],
        instance=instance,
        resources={"storage": HarvestStorage(data_root=str(root))},
        tags=dict(request.tags) if request else None,
        partition_key=name,
        raise_on_error=False,
    )
    return outcome.success

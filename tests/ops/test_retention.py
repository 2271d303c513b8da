"""Retention deletes a sealed segment only once it is compacted and older than the retention period."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg

from assets.resources import HarvestStorage
from assets.retention import segment_retention
from harvest_pipeline import segments
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.status import COMPACTION_MARKER_ASSET

DAY_NS = 86400 * 10**9


def seal_segment(paths: DataPaths, opened_at_ns: int, sealed_at_ns: int, counter: int) -> str:
    """A real one-line sealed segment, sealed at ``sealed_at_ns``."""
    name = segments.segment_name(opened_at_ns, "test", "abcd", counter)
    open_dir = paths.open_segments / "test"
    open_dir.mkdir(parents=True, exist_ok=True)
    segment = segments.OpenSegment(open_dir, name, "test", opened_at_ns)
    segment.append([segments.encode_control(opened_at_ns, "c1", 1, "connect", url="ws://127.0.0.1:1")])
    segment.seal(paths.sealed_segments, sealed_at_ns=sealed_at_ns)
    return name


def test_retention_keeps_uncompacted_and_recent_segments_and_deletes_the_rest(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HARVEST_SEGMENT_RETENTION_DAYS", "7")
    paths = DataPaths.from_root(tmp_path)
    now = time.time_ns()
    old_compacted = seal_segment(paths, now - 10 * DAY_NS, now - 10 * DAY_NS, 1)
    old_uncompacted = seal_segment(paths, now - 9 * DAY_NS, now - 9 * DAY_NS, 2)
    recent_compacted = seal_segment(paths, now - DAY_NS, now - DAY_NS, 3)

    with dg.instance_for_test() as instance:
        for name in (old_compacted, recent_compacted):
            instance.report_runless_asset_event(dg.AssetMaterialization(COMPACTION_MARKER_ASSET, partition=name))
        result = segment_retention.execute_in_process(
            instance=instance, resources={"storage": HarvestStorage(data_root=str(tmp_path))}
        )

    assert result.success
    assert result.output_for_node("delete_expired_segments") == 1
    left = {s.name for s in segments.list_sealed_segments(paths.sealed_segments)}
    assert left == {old_uncompacted, recent_compacted}
    assert not list(paths.sealed_segments.rglob(f"{old_compacted}*")), "data file and sidecar are both gone"

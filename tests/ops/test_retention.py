"""Retention deletes a sealed segment only once it is compacted and older than the retention period."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import dagster as dg

from assets.resources import HarvestStorage
from assets.retention import segment_retention
from harvest_pipeline import segments
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.status import COMPACTION_MARKER_ASSET
from tests.ops.segment_files import DAY_NS, data_file, seal_segment, sidecar_file


def run_retention(tmp_path: Path, compacted: list[str]) -> tuple[dg.ExecuteInProcessResult, list[str]]:
    """Run the job on a temporary instance where ``compacted`` are compacted; its result and its warnings."""
    with dg.instance_for_test() as instance:
        for name in compacted:
            instance.report_runless_asset_event(dg.AssetMaterialization(COMPACTION_MARKER_ASSET, partition=name))
        result = segment_retention.execute_in_process(
            instance=instance, resources={"storage": HarvestStorage(data_root=str(tmp_path))}
        )
        logs = instance.all_logs(result.run_id)
        return result, [entry.user_message for entry in logs if entry.level == logging.WARNING]


def test_retention_keeps_uncompacted_and_recent_segments_and_deletes_the_rest(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HARVEST_SEGMENT_RETENTION_DAYS", "7")
    paths = DataPaths.from_root(tmp_path)
    now = time.time_ns()
    old_compacted = seal_segment(paths, now - 10 * DAY_NS, now - 10 * DAY_NS, 1)
    old_uncompacted = seal_segment(paths, now - 9 * DAY_NS, now - 9 * DAY_NS, 2)
    recent_compacted = seal_segment(paths, now - DAY_NS, now - DAY_NS, 3)

    result, _ = run_retention(tmp_path, [old_compacted, recent_compacted])

    assert result.success
    assert result.output_for_node("delete_expired_segments") == 1
    left = {s.name for s in segments.list_sealed_segments(paths.sealed_segments)}
    assert left == {old_uncompacted, recent_compacted}
    assert not list(paths.sealed_segments.rglob(f"{old_compacted}*")), "data file and sidecar are both gone"


def test_a_corrupt_or_missing_sidecar_is_skipped_with_a_warning_and_the_others_are_still_deleted(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("HARVEST_SEGMENT_RETENTION_DAYS", "7")
    paths = DataPaths.from_root(tmp_path)
    now = time.time_ns()
    corrupt, missing, expired = (seal_segment(paths, now - 10 * DAY_NS, now - 10 * DAY_NS, i) for i in (1, 2, 3))
    sidecar_file(paths, corrupt).write_bytes(b'{"name": "truncated')
    sidecar_file(paths, missing).unlink()

    result, warnings = run_retention(tmp_path, [corrupt, missing, expired])

    assert result.success
    assert result.output_for_node("delete_expired_segments") == 1
    assert not data_file(paths, expired).exists()
    assert data_file(paths, corrupt).exists() and data_file(paths, missing).exists()
    assert len(warnings) == 2
    assert warnings[0].startswith(f"retention skips segment {corrupt}: sidecar corrupt")
    assert warnings[1].startswith(f"retention skips segment {missing}: sidecar missing")

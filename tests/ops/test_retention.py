"""Retention on a real on-disk instance: segments go only once compacted and past retention, and their partitions
with them; partitions whose files vanished are cleaned up; the run-history job deletes old finished runs only."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import dagster as dg
import pytest

from assets.resources import HarvestStorage
from assets.retention import run_history_retention, segment_retention
from harvest_pipeline import retention, segments
from harvest_pipeline.dagster_home import ensure_dagster_home
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.status import COMPACTION_MARKER_ASSET, SEGMENT_PARTITIONS_NAME
from tests.ops.segment_files import DAY_NS, data_file, seal_segment, sidecar_file


@pytest.fixture
def instance(tmp_path: Path):
    """harvest's own instance (its dagster.yaml, SQLite storage) in the test's data root."""
    home = ensure_dagster_home(DataPaths.from_root(tmp_path)).parent
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def register(instance: dg.DagsterInstance, names: list[str], compacted: list[str]) -> None:
    """Register ``names`` as segment partitions and record ``compacted`` as compacted (the marker materialized)."""
    instance.add_dynamic_partitions(SEGMENT_PARTITIONS_NAME, names)
    for name in compacted:
        instance.report_runless_asset_event(dg.AssetMaterialization(COMPACTION_MARKER_ASSET, partition=name))


def run_retention(
    tmp_path: Path, instance: dg.DagsterInstance, now_ns: int | None = None
) -> tuple[dg.ExecuteInProcessResult, list[str]]:
    """Run the job; its result and its warnings."""
    config = {"ops": {"delete_expired_segments": {"config": {"now_ns": now_ns}}}}
    result = segment_retention.execute_in_process(
        instance=instance, resources={"storage": HarvestStorage(data_root=str(tmp_path))}, run_config=config
    )
    logs = instance.all_logs(result.run_id)
    return result, [entry.user_message for entry in logs if entry.level == logging.WARNING]


def registered(instance: dg.DagsterInstance) -> set[str]:
    return set(instance.get_dynamic_partitions(SEGMENT_PARTITIONS_NAME))


def test_retention_deletes_expired_segments_and_their_partitions_and_keeps_uncompacted_and_recent_ones(
    tmp_path: Path, instance: dg.DagsterInstance, monkeypatch
) -> None:
    monkeypatch.setenv("HARVEST_SEGMENT_RETENTION_DAYS", "7")
    paths = DataPaths.from_root(tmp_path)
    now = time.time_ns()
    old_compacted = seal_segment(paths, now - 10 * DAY_NS, now - 10 * DAY_NS, 1)
    old_uncompacted = seal_segment(paths, now - 9 * DAY_NS, now - 9 * DAY_NS, 2)
    recent_compacted = seal_segment(paths, now - DAY_NS, now - DAY_NS, 3)
    register(instance, [old_compacted, old_uncompacted, recent_compacted], [old_compacted, recent_compacted])

    result, _ = run_retention(tmp_path, instance)

    assert result.success
    assert result.output_for_node("delete_expired_segments") == 1
    left = {s.name for s in segments.list_sealed_segments(paths.sealed_segments)}
    assert left == {old_uncompacted, recent_compacted}
    assert not list(paths.sealed_segments.rglob(f"{old_compacted}*")), "data file and sidecar are both gone"
    assert registered(instance) == {old_uncompacted, recent_compacted}


def test_a_simulated_clock_decides_what_has_expired(tmp_path: Path, instance: dg.DagsterInstance, monkeypatch) -> None:
    monkeypatch.setenv("HARVEST_SEGMENT_RETENTION_DAYS", "7")
    paths = DataPaths.from_root(tmp_path)
    sealed_at = 1_767_225_600 * 10**9  # 2026-01-01
    first, second = (seal_segment(paths, sealed_at + i * DAY_NS, sealed_at + i * DAY_NS, i) for i in (0, 2))
    register(instance, [first, second], [first, second])

    run_retention(tmp_path, instance, now_ns=sealed_at + 8 * DAY_NS)

    assert registered(instance) == {second}
    assert data_file(paths, second).exists() and not data_file(paths, first).exists()


def test_compacted_old_partitions_whose_files_were_removed_by_hand_are_deleted_the_others_kept(
    tmp_path: Path, instance: dg.DagsterInstance, monkeypatch
) -> None:
    monkeypatch.setenv("HARVEST_SEGMENT_RETENTION_DAYS", "7")
    paths = DataPaths.from_root(tmp_path)
    now = time.time_ns()
    gone_compacted = seal_segment(paths, now - 10 * DAY_NS, now - 10 * DAY_NS, 1)
    gone_uncompacted = seal_segment(paths, now - 10 * DAY_NS, now - 10 * DAY_NS, 2)
    gone_recent = seal_segment(paths, now - DAY_NS, now - DAY_NS, 3)
    register(instance, [gone_compacted, gone_uncompacted, gone_recent], [gone_compacted, gone_recent])
    for name in (gone_compacted, gone_uncompacted, gone_recent):
        data_file(paths, name).unlink()
        sidecar_file(paths, name).unlink()

    result, _ = run_retention(tmp_path, instance)

    assert result.success
    assert result.output_for_node("delete_expired_segments") == 0
    assert registered(instance) == {gone_uncompacted, gone_recent}


def test_a_corrupt_or_missing_sidecar_is_skipped_with_a_warning_and_the_others_are_still_deleted(
    tmp_path: Path, instance: dg.DagsterInstance, monkeypatch
) -> None:
    monkeypatch.setenv("HARVEST_SEGMENT_RETENTION_DAYS", "7")
    paths = DataPaths.from_root(tmp_path)
    now = time.time_ns()
    corrupt, missing, expired = (seal_segment(paths, now - 10 * DAY_NS, now - 10 * DAY_NS, i) for i in (1, 2, 3))
    sidecar_file(paths, corrupt).write_bytes(b'{"name": "truncated')
    sidecar_file(paths, missing).unlink()
    register(instance, [corrupt, missing, expired], [corrupt, missing, expired])

    result, warnings = run_retention(tmp_path, instance)

    assert result.success
    assert result.output_for_node("delete_expired_segments") == 1
    assert not data_file(paths, expired).exists()
    assert data_file(paths, corrupt).exists() and data_file(paths, missing).exists()
    assert registered(instance) == {corrupt, missing}
    assert len(warnings) == 2
    assert warnings[0].startswith(f"retention skips segment {corrupt}: sidecar corrupt")
    assert warnings[1].startswith(f"retention skips segment {missing}: sidecar missing")


def test_compaction_is_asked_about_in_batches_over_the_candidates_only(
    tmp_path: Path, instance: dg.DagsterInstance, monkeypatch
) -> None:
    monkeypatch.setattr(retention, "QUERY_BATCH", 3)
    names = [f"20260101T0000{i:02d}000000Z-test-abcd-{i:06d}" for i in range(8)]
    register(instance, names, names[::2])
    instance.report_runless_asset_event(dg.AssetMaterialization(COMPACTION_MARKER_ASSET, partition=names[0]))

    assert retention.compacted_among(instance, names) == set(names[::2])
    assert retention.compacted_among(instance, names[1:2]) == set()


@dg.op
def succeed() -> None:
    """A run that ends in success."""


@dg.job
def finished_job() -> None:
    succeed()


def test_run_history_job_deletes_old_finished_runs_only(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    old_success = finished_job.execute_in_process(instance=instance).run_id
    old_failed = instance.create_run_for_job(finished_job).run_id
    instance.report_run_failed(instance.get_run_by_id(old_failed))
    old_running = instance.add_run(dg.DagsterRun("finished_job", status=dg.DagsterRunStatus.STARTED)).run_id
    old_not_started = instance.create_run_for_job(finished_job).run_id
    cutoff = time.time() + 0.5
    time.sleep(1.6)  # run timestamps are stored to the second
    recent_success = finished_job.execute_in_process(instance=instance).run_id

    config = {"ops": {"delete_old_runs": {"config": {"finished_before": cutoff}}}}
    result = run_history_retention.execute_in_process(instance=instance, run_config=config)

    assert result.success
    assert result.output_for_node("delete_old_runs") == 2
    left = {run.run_id for run in instance.get_runs()}
    assert left == {old_running, old_not_started, recent_success, result.run_id}
    home = Path(instance.root_directory)
    assert (home / "history" / "runs" / f"{recent_success}.db").exists()
    assert (home / "storage" / recent_success).is_dir(), "a kept run keeps its compute logs"
    assert not (home / "history" / "runs" / f"{old_success}.db").exists(), "a deleted run's event log goes with it"
    assert not (home / "storage" / old_success).exists(), "and so do its compute logs"
    assert old_failed not in left


def test_runs_outlive_segment_retention_whatever_is_configured(monkeypatch) -> None:
    monkeypatch.setenv("HARVEST_SEGMENT_RETENTION_DAYS", "7")
    monkeypatch.setenv("HARVEST_RUN_RETENTION_DAYS", "2")
    assert retention.run_retention_seconds() == 8 * 86400
    monkeypatch.setenv("HARVEST_RUN_RETENTION_DAYS", "30")
    assert retention.run_retention_seconds() == 30 * 86400

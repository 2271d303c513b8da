"""A corrupt segment in a batch run, on a real temporary Dagster instance: it fails alone, without retries, and its
batch-mates are compacted and materialized; poison values never fail a run."""

import dagster as dg
import pytest
from dagster._core.storage.partition_status_cache import AssetPartitionStatus
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.compaction import RAW_KIND_KEYS, RECONCILIATION_CHECK, SEGMENT_PARTITIONS, raw_market_data
from assets.resources import HarvestStorage
from harvest_pipeline import segments
from tests.compaction.test_dagster_compaction import write_segments
from tests.compaction.test_quarantine_rules import build_poison_segment, flip_a_digit


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def run_range(instance: dg.DagsterInstance, storage: HarvestStorage, names: list[str]) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions(SEGMENT_PARTITIONS.name, names)
    tags = {ASSET_PARTITION_RANGE_START_TAG: names[0], ASSET_PARTITION_RANGE_END_TAG: names[-1]}
    return dg.materialize(
        [raw_market_data], instance=instance, resources={"storage": storage}, tags=tags, raise_on_error=False
    )


def step_failure_description(outcome: dg.ExecuteInProcessResult) -> str:
    [failure] = [e for e in outcome.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    return failure.step_failure_data.user_failure_data.description


def test_a_corrupt_segment_fails_alone_without_retries_and_its_batch_mates_are_materialized(tmp_path, instance):
    storage = HarvestStorage(data_root=str(tmp_path))
    names = write_segments(tmp_path, 3, frames=200)
    corrupt = names[1]
    flip_a_digit(segments.find_sealed_segment(storage.paths().sealed_segments, corrupt).path)

    outcome = run_range(instance, storage, names)

    assert not outcome.success
    description = step_failure_description(outcome)
    assert f"cannot compact segment {corrupt}: segment {corrupt} is corrupt: sha256 " in description
    assert "!= sidecar " in description and names[0] not in description and names[2] not in description
    assert not [e for e in outcome.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    written = {p.name.removeprefix("part-").removesuffix(".parquet") for p in (tmp_path / "parquet").rglob("*.parquet")}
    assert written == {names[0], names[2]}
    for key in RAW_KIND_KEYS.values():
        assert instance.get_materialized_partitions(key) == {names[0], names[2]}
        status = instance.get_status_by_partition(key, names, SEGMENT_PARTITIONS)
        assert status == {
            names[0]: AssetPartitionStatus.MATERIALIZED,
            corrupt: AssetPartitionStatus.FAILED,
            names[2]: AssetPartitionStatus.MATERIALIZED,
        }
    [reconciliation] = [e for e in outcome.get_asset_check_evaluations() if e.check_name == RECONCILIATION_CHECK.name]
    assert reconciliation.passed and reconciliation.metadata["segments"].value == 2


@pytest.mark.parametrize("sidecar", [b"not json", b'{"name": "x"}'], ids=["not JSON", "fields missing"])
def test_an_unreadable_sidecar_fails_its_partition_naming_it_without_retries(tmp_path, instance, sidecar):
    storage = HarvestStorage(data_root=str(tmp_path))
    [name] = write_segments(tmp_path, 1)
    segments.find_sealed_segment(storage.paths().sealed_segments, name).meta_path.write_bytes(sidecar)

    outcome = run_range(instance, storage, [name])

    assert not outcome.success
    assert f"segment {name}: sidecar " in step_failure_description(outcome)
    assert "is corrupt" in step_failure_description(outcome)
    assert not [e for e in outcome.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert not instance.get_materialized_partitions(RAW_KIND_KEYS["prices"])


def test_a_segment_full_of_poison_values_materializes_first_time_and_reconciles(tmp_path, instance):
    storage = HarvestStorage(data_root=str(tmp_path))
    poisoned = build_poison_segment(tmp_path).builder.seal()

    outcome = run_range(instance, storage, [poisoned.name])

    assert outcome.success
    assert not [e for e in outcome.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    checks = {e.check_name: e for e in outcome.get_asset_check_evaluations()}
    assert checks[RECONCILIATION_CHECK.name].passed
    assert checks[RECONCILIATION_CHECK.name].metadata["quarantined"].value > 20

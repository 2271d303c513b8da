"""The compaction asset and the sealed_segments sensor on a real temporary Dagster instance (no mocks)."""

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.compaction import AGG_ID_CHECK, RAW_KIND_KEYS, RECONCILIATION_CHECK, SEGMENT_PARTITIONS, raw_market_data
from assets.resources import HarvestStorage
from harvest_pipeline import segments
from harvest_pipeline.segments import FileSystem
from sensors.segments import batch_requests, sealed_segments
from tests.compaction.frames import MS, SegmentBuilder, TrafficMix

START_MS = 1_767_225_600_000


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def write_segments(root: Path, count: int, frames: int = 20, start_ms: int = START_MS) -> list[str]:
    """``count`` sealed segments of mixed traffic, one second apart."""
    mix = TrafficMix(start_ms=start_ms)
    names = []
    for index in range(count):
        opened_ms = start_ms + index * 1000
        builder = SegmentBuilder(root, opened_at_ns=opened_ms * MS)
        for stream, raw, event_ms in mix.frames(frames):
            builder.frame(stream, raw, event_ms + 3)
        names.append(builder.seal(segments.segment_name(opened_ms * MS, "test", "b00t", index + 1)).name)
    return names


def tick(instance: dg.DagsterInstance, storage: HarvestStorage, cursor: str | None) -> dg.SensorResult:
    """Evaluate the sensor once and apply its partition requests, as the sensor daemon does."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": storage})
    result = sealed_segments(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def requested_names(instance: dg.DagsterInstance, result: dg.SensorResult) -> list[str]:
    keys = instance.get_dynamic_partitions(SEGMENT_PARTITIONS.name)
    names = []
    for request in result.run_requests or []:
        start, end = request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]
        names += keys[keys.index(start) : keys.index(end) + 1]
    return names


def test_sensor_registers_new_segments_once_and_survives_a_restart(tmp_path, instance):
    storage = HarvestStorage(data_root=str(tmp_path))
    first_names = write_segments(tmp_path, 3)

    first = tick(instance, storage, None)
    assert requested_names(instance, first) == first_names
    assert instance.get_dynamic_partitions(SEGMENT_PARTITIONS.name) == first_names

    again = tick(instance, storage, first.cursor)
    assert not again.run_requests and again.skip_reason

    late = write_segments(tmp_path, 1, start_ms=START_MS - 60_000)  # recovered after a crash: older name, sealed late
    restarted = tick(instance, storage, again.cursor)  # a new context from the stored cursor, as after a restart
    assert requested_names(instance, restarted) == late
    assert not tick(instance, storage, restarted.cursor).run_requests


def test_a_backlog_becomes_few_runs_of_partition_ranges(tmp_path, instance):
    storage = HarvestStorage(data_root=str(tmp_path))
    names = write_segments(tmp_path, 150, frames=2)

    result = tick(instance, storage, None)

    assert [len(requested_names(instance, dg.SensorResult(run_requests=[r]))) for r in result.run_requests] == [
        64,
        64,
        22,
    ]
    assert requested_names(instance, result) == names
    assert len({r.run_key for r in result.run_requests}) == 3


def test_a_range_run_compacts_every_segment_of_the_batch(tmp_path, instance):
    storage = HarvestStorage(data_root=str(tmp_path))
    names = write_segments(tmp_path, 5, frames=40)
    instance.add_dynamic_partitions(SEGMENT_PARTITIONS.name, names)
    [request] = batch_requests(names)

    outcome = dg.materialize([raw_market_data], instance=instance, resources={"storage": storage}, tags=request.tags)

    assert outcome.success
    written = {p.name.removeprefix("part-").removesuffix(".parquet") for p in (tmp_path / "parquet").rglob("*.parquet")}
    assert written == set(names)
    checks = {e.check_name: e.passed for e in outcome.get_asset_check_evaluations()}
    assert checks[RECONCILIATION_CHECK.name] and checks[AGG_ID_CHECK.name]
    materialized = instance.get_materialized_partitions(RAW_KIND_KEYS["prices"])
    assert materialized == set(names)


def test_materializing_a_partition_twice_leaves_identical_data_and_metadata(tmp_path, instance):
    storage = HarvestStorage(data_root=str(tmp_path))
    [name] = write_segments(tmp_path, 1, frames=300)
    instance.add_dynamic_partitions(SEGMENT_PARTITIONS.name, [name])

    def run() -> tuple[dict, dict]:
        outcome = dg.materialize(
            [raw_market_data], instance=instance, resources={"storage": storage}, partition_key=name
        )
        assert outcome.success
        tables = {p: pq.read_table(p) for p in sorted((tmp_path / "parquet").rglob("*.parquet"))}
        [prices] = [m for m in outcome.get_asset_materialization_events() if m.asset_key == RAW_KIND_KEYS["prices"]]
        return tables, prices.materialization.metadata

    first_tables, first_meta = run()
    second_tables, second_meta = run()
    assert first_tables.keys() == second_tables.keys()
    assert all(first_tables[p].equals(second_tables[p]) for p in first_tables)
    assert first_meta["rows_by_date_symbol"] == second_meta["rows_by_date_symbol"]
    prices_rows = sum(t.num_rows for p, t in first_tables.items() if "kind=prices" in str(p))
    assert first_meta["dagster/row_count"].value == prices_rows > 0


class FailFirstRename(FileSystem):
    """Fails the first rename of a Parquet file (as EIO would), then behaves; the flag lives on disk across retries."""

    def __init__(self, marker: Path):
        self.marker = marker

    def replace(self, src: Path, dst: Path) -> None:
        if not self.marker.exists():
            self.marker.write_text("failed once")
            raise OSError(5, "Input/output error (injected)", str(dst))
        super().replace(src, dst)


class FlakyStorage(HarvestStorage):
    """HarvestStorage whose output file system fails once."""

    marker: str

    def output_fs(self) -> FileSystem:
        return FailFirstRename(Path(self.marker))


def test_an_injected_io_error_is_retried_and_the_run_succeeds(tmp_path, instance):
    storage = FlakyStorage(data_root=str(tmp_path), marker=str(tmp_path / "failed-once"))
    [name] = write_segments(tmp_path, 1)
    instance.add_dynamic_partitions(SEGMENT_PARTITIONS.name, [name])

    outcome = dg.materialize([raw_market_data], instance=instance, resources={"storage": storage}, partition_key=name)

    assert outcome.success
    assert (tmp_path / "failed-once").exists()
    retries = [e for e in outcome.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(retries) == 1
    assert instance.get_materialized_partitions(RAW_KIND_KEYS["prices"]) == {name}


def test_a_missing_segment_fails_the_run_naming_it_without_retries(tmp_path, instance):
    storage = HarvestStorage(data_root=str(tmp_path))
    [name] = write_segments(tmp_path, 1)
    segments.find_sealed_segment(storage.paths().sealed_segments, name).path.unlink()
    instance.add_dynamic_partitions(SEGMENT_PARTITIONS.name, [name])

    outcome = dg.materialize(
        [raw_market_data], instance=instance, resources={"storage": storage}, partition_key=name, raise_on_error=False
    )

    assert not outcome.success
    [failure] = [e for e in outcome.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert f"cannot compact segment {name}" in failure.step_failure_data.user_failure_data.description
    assert not [e for e in outcome.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]

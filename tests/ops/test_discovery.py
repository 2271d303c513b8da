"""The ``sealed_segments`` sensor on a real Dagster instance: no clock can hide a segment, a quiet tick lists nothing,
and a segment with a bad sidecar is reported without stopping the others."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import dagster as dg
import orjson
import pytest

from assets.compaction import SEGMENT_PARTITIONS
from assets.resources import HarvestStorage
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import discovery
from tests.compaction.test_dagster_compaction import tick as tick_with_storage
from tests.ops.segment_files import DAY_NS, SECOND_NS, data_file, seal_segment, sidecar_file

HOUR_NS = 3600 * SECOND_NS


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return DataPaths.from_root(tmp_path)


def tick(instance: dg.DagsterInstance, paths: DataPaths, cursor: str | None) -> dg.SensorResult:
    """Evaluate the sensor once and apply its partition requests, as the sensor daemon does."""
    return tick_with_storage(instance, HarvestStorage(data_root=str(paths.root)), cursor)


def requested(instance: dg.DagsterInstance, result: dg.SensorResult) -> list[str]:
    """The segment partitions the tick's run requests cover (read back through the public range property)."""
    keys = list(instance.get_dynamic_partitions(SEGMENT_PARTITIONS.name))
    names = []
    for request in result.run_requests or []:
        covered = request.partition_key_range
        names += keys[keys.index(covered.start) : keys.index(covered.end) + 1]
    return names


def age_folders(paths: DataPaths) -> None:
    """Stamp every date folder as last changed at the end of its day, as a long history on disk would be."""
    for folder in paths.sealed_segments.iterdir():
        day_end = dt.datetime.fromisoformat(folder.name.removeprefix("date=")).replace(tzinfo=dt.UTC)
        stamp = min(int(day_end.timestamp()) * SECOND_NS + DAY_NS - 1, time.time_ns() - HOUR_NS)
        os.utime(folder, ns=(stamp, stamp))


class ListingCounter:
    """Counts the date folders the sensor lists (wraps ``discovery.list_date_folder``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.listed: list[str] = []
        real = discovery.list_date_folder

        def counting(folder: Path) -> discovery.SealedListing:
            self.listed.append(folder.name)
            return real(folder)

        monkeypatch.setattr(discovery, "list_date_folder", counting)

    def take(self) -> list[str]:
        listed, self.listed = self.listed, []
        return listed


def test_segments_sealed_with_the_clock_days_ahead_then_normal_then_days_behind_are_all_registered(instance, paths):
    now = time.time_ns()
    ahead = [seal_segment(paths, now + 3 * DAY_NS + i * SECOND_NS, now + 3 * DAY_NS, i) for i in range(2)]
    future_folder = data_file(paths, ahead[0]).parent
    os.utime(future_folder, ns=(now + 3 * DAY_NS,) * 2)  # the jumped clock stamped its folder too
    first = tick(instance, paths, None)
    assert requested(instance, first) == ahead

    normal = [seal_segment(paths, now + i * SECOND_NS, now, 10 + i) for i in range(2)]
    second = tick(instance, paths, first.cursor)
    assert requested(instance, second) == normal, "the folder dated 3 days ahead must not become a floor"

    behind = [seal_segment(paths, now - 3 * DAY_NS + i * SECOND_NS, now, 20 + i) for i in range(2)]
    late_into_future_folder = seal_segment(paths, now + 3 * DAY_NS + 9 * SECOND_NS, now, 30)
    third = tick(instance, paths, second.cursor)
    assert sorted(requested(instance, third)) == sorted([*behind, late_into_future_folder])

    everything = sorted([*ahead, *normal, *behind, late_into_future_folder])
    assert sorted(instance.get_dynamic_partitions(SEGMENT_PARTITIONS.name)) == everything
    quiet = tick(instance, paths, third.cursor)
    assert not quiet.run_requests and quiet.skip_reason.skip_message.startswith("no new sealed segments")


def test_a_missing_cursor_lists_every_folder_and_registers_nothing_twice(instance, paths):
    now = time.time_ns()
    names = [seal_segment(paths, now - i * DAY_NS, now, i) for i in range(3)]
    first = tick(instance, paths, None)
    assert sorted(requested(instance, first)) == sorted(names)

    again = tick(instance, paths, None)  # cursor lost (or an older format): every folder is listed again
    assert not again.run_requests and "3 of 3 date folder(s) listed" in again.skip_reason.skip_message
    assert tick(instance, paths, '{"since_date": "2026-01-01"}').skip_reason == again.skip_reason


@pytest.mark.parametrize("days", [3, 300])
def test_a_tick_with_nothing_new_lists_no_folder_however_long_the_history(instance, paths, monkeypatch, days):
    now = time.time_ns()
    names = [seal_segment(paths, now - (days - i) * DAY_NS, now - HOUR_NS, i) for i in range(days)]
    age_folders(paths)
    counter = ListingCounter(monkeypatch)

    first = tick(instance, paths, None)
    assert len(counter.take()) == days and sorted(requested(instance, first)) == sorted(names)

    started = time.perf_counter()
    quiet = tick(instance, paths, first.cursor)
    quiet_s = time.perf_counter() - started
    assert counter.take() == [] and not quiet.run_requests
    assert len(quiet.cursor) < 4096, "the cursor stays small and bounded, whatever the number of folders"
    assert quiet_s < 1.0

    newest = seal_segment(paths, now - 1 * DAY_NS + SECOND_NS, now, 1000)  # into the most recent folder
    oldest = seal_segment(paths, now - days * DAY_NS + SECOND_NS, now, 1001)  # recovered late into the oldest one
    late = tick(instance, paths, quiet.cursor)
    listed = counter.take()
    assert sorted(requested(instance, late)) == sorted([newest, oldest])
    assert data_file(paths, newest).parent.name in listed and data_file(paths, oldest).parent.name in listed
    assert len(listed) <= 1 + 31, "a change lists its own folder, or at most its month's settled folders"


def test_a_folder_changed_within_the_timestamp_granularity_is_listed_again(instance, paths):
    now = time.time_ns()
    first_name = seal_segment(paths, now, now, 1)
    first = tick(instance, paths, None)
    folder = data_file(paths, first_name).parent
    stamp = folder.stat().st_mtime_ns
    second_name = seal_segment(paths, now + SECOND_NS, now, 2)
    os.utime(folder, ns=(stamp, stamp))  # the second rename landed in the same timestamp tick as the first

    second = tick(instance, paths, first.cursor)
    assert requested(instance, second) == [second_name]


def test_segments_without_a_valid_sidecar_are_reported_and_the_others_are_registered(instance, paths):
    now = time.time_ns()
    good, missing, corrupt = (seal_segment(paths, now + i * SECOND_NS, now, i) for i in range(3))
    saved = sidecar_file(paths, missing).read_bytes()
    sidecar_file(paths, missing).unlink()
    sidecar_file(paths, corrupt).write_bytes(b"[1, 2")

    first = tick(instance, paths, None)
    assert requested(instance, first) == [good]
    assert orjson.loads(first.cursor)["invalid"] == sorted([missing, corrupt])

    second = tick(instance, paths, first.cursor)
    assert not second.run_requests
    assert f"{missing}: sidecar missing" in second.skip_reason.skip_message
    assert f"{corrupt}: sidecar corrupt" in second.skip_reason.skip_message

    sidecar_file(paths, missing).write_bytes(saved)  # repaired in place: its folder's listing need not change
    third = tick(instance, paths, second.cursor)
    assert requested(instance, third) == [missing]
    assert orjson.loads(third.cursor)["invalid"] == [corrupt]

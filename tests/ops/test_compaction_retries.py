"""The ``compaction_retries`` sensor on a real Dagster instance: a failed segment is requested again after 1, 2, 4 ...
minutes, given up (and named) after N retries, and forgotten once it is compacted."""

from __future__ import annotations

import time

import dagster as dg
import pytest

import sensors.compaction_retries as retries
from harvest_pipeline.segments import sealed_path
from harvest_pipeline.status import SegmentProgress, segment_progress
from sensors.compaction_retries import compaction_retries, retry_requests
from tests.ops.compacted import compact, write_registered_segments

DAY_S = 86400


class Clock:
    """A wall clock the test moves (the sensor reads ``time_ns`` through its module)."""

    def __init__(self) -> None:
        self.now_s = time.time()

    def __call__(self) -> int:
        return int(self.now_s * 1e9)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(retries, "time_ns", fake)
    return fake


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


class Sensor:
    """Ticks the sensor, carrying its cursor as the daemon does."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance
        self.cursor: str | None = None

    def tick(self) -> dg.SensorResult:
        result = compaction_retries(dg.build_sensor_context(instance=self.instance, cursor=self.cursor))
        self.cursor = result.cursor
        return result


def covered(request: dg.RunRequest) -> tuple[str, str]:
    return request.partition_key_range.start, request.partition_key_range.end


def test_a_failed_segment_is_retried_after_1_2_4_minutes_then_given_up_and_named(
    tmp_path, instance, clock, monkeypatch, capfd
):
    monkeypatch.setattr(retries, "MAX_RETRIES", 3)
    [name] = write_registered_segments(tmp_path, instance, 1)
    sealed_path(tmp_path / "segments" / "sealed", name).unlink()  # a segment that can no longer be compacted
    assert not compact(tmp_path, instance, name=name)
    sensor = Sensor(instance)

    for attempt, delay_s in enumerate((60, 120, 240), start=1):
        assert not sensor.tick().run_requests, "the tick that sees the failure starts its backoff"
        clock.now_s += delay_s - 2
        assert not sensor.tick().run_requests, f"retry {attempt} must wait {delay_s} s"
        clock.now_s += 3
        [request] = sensor.tick().run_requests
        assert covered(request) == (name, name) and request.run_key == f"retry{attempt}|{name}..{name}"
        assert not compact(tmp_path, instance, request)

    capfd.readouterr()
    gave_up = sensor.tick()
    assert not gave_up.run_requests and f"given up on 1: {name}" in gave_up.skip_reason.skip_message
    assert f"WARNING - giving up on segment {name} after 3 compaction retries" in capfd.readouterr().err
    clock.now_s += DAY_S
    assert not sensor.tick().run_requests
    assert segment_progress(instance).failing == [name]


def test_a_segment_whose_retry_succeeds_is_forgotten(tmp_path, instance, clock):
    [name] = write_registered_segments(tmp_path, instance, 1)
    data = sealed_path(tmp_path / "segments" / "sealed", name)
    saved = data.read_bytes()
    data.unlink()
    assert not compact(tmp_path, instance, name=name)
    sensor = Sensor(instance)
    sensor.tick()

    data.write_bytes(saved)  # the operator put it back (or the disk came back)
    clock.now_s += 61
    [request] = sensor.tick().run_requests
    assert compact(tmp_path, instance, request)

    done = sensor.tick()
    assert not done.run_requests and done.skip_reason.skip_message == "0 failed segment(s) waiting for a retry"
    assert segment_progress(instance).failing == []


def test_a_clock_that_jumps_back_does_not_freeze_the_backoff(tmp_path, instance, clock):
    [name] = write_registered_segments(tmp_path, instance, 1)
    sealed_path(tmp_path / "segments" / "sealed", name).unlink()
    assert not compact(tmp_path, instance, name=name)
    sensor = Sensor(instance)
    sensor.tick()

    clock.now_s -= 3 * DAY_S
    assert not sensor.tick().run_requests
    clock.now_s += 61
    assert len(sensor.tick().run_requests) == 1


def test_retries_of_a_failed_batch_shrink_fourfold_per_attempt_and_never_span_a_gap():
    names = [f"s{i:02d}" for i in range(21)]
    progress = SegmentProgress(registered=names, compacted={"s20"}, failing=names[:20], in_progress=set())

    def sizes(attempt: int, due: list[str]) -> list[int]:
        requests = retry_requests({attempt: due}, progress)
        return [names.index(r.partition_key_range.end) - names.index(r.partition_key_range.start) + 1 for r in requests]

    assert sizes(1, names[:20]) == [16, 4]
    assert sizes(2, names[:20]) == [4] * 5
    assert sizes(3, names[:20]) == [1] * 20
    assert sizes(1, [*names[:3], *names[5:8]]) == [3, 3], "a range never covers a partition that is not due"


def test_a_quiet_tick_does_not_read_every_partition_status(tmp_path, instance, clock, monkeypatch):
    write_registered_segments(tmp_path, instance, 2)
    reads = []
    monkeypatch.setattr(retries, "segment_progress", lambda i: reads.append(1) or segment_progress(i))
    sensor = Sensor(instance)
    sensor.tick()
    assert len(reads) == 1, "the first tick reads the statuses once"
    clock.now_s += 30
    sensor.tick()
    assert len(reads) == 1, "no new run failure and nothing being retried: two event-log queries only"
    clock.now_s += retries.FULL_CHECK_S
    sensor.tick()
    assert len(reads) == 2, "given-up segments fixed by hand are noticed within FULL_CHECK_S"

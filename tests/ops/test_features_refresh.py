"""The ``features_refresh`` sensor on a real Dagster instance: late parts for any day rebuild that day, today is
refreshed from its files, and the first tick does not replay the history."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from assets.resources import HarvestStorage
from harvest_pipeline.features.sources import day_start_ms
from sensors.features import features_final_job, features_refresh, features_refresh_job
from tests.ops.compacted import compact, write_registered_segments

SYMBOL = "BTCUSDT"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
"""The symbols of the segments' traffic: compaction makes both partitions, configured or not."""


def test_late_parts_for_past_days_rebuild_those_days_and_today_is_refreshed_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HARVEST_SYMBOLS", SYMBOL)
    today = dt.datetime.now(dt.UTC).date()
    with dg.instance_for_test() as instance:
        resources = {"storage": HarvestStorage(data_root=str(tmp_path))}
        cursor = None

        def tick() -> list[tuple[str, str]]:
            nonlocal cursor
            result = features_refresh(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))
            cursor = result.cursor
            return sorted((str(r.partition_key), r.job_name) for r in result.run_requests)

        def compact_day(day: dt.date, segment_count: int = 1) -> None:
            start_ms = day_start_ms(day) + 3_600_000
            for name in write_registered_segments(tmp_path / day.isoformat(), instance, segment_count, start_ms):
                assert compact(tmp_path / day.isoformat(), instance, name=name)

        compact_day(dt.date(2026, 1, 2))
        assert tick() == [], "the first tick starts at the newest materialization: history is the nightly's job"

        compact_day(dt.date(2026, 1, 5))  # late data for a day whose nightly build is long done
        assert tick() == [(f"2026-01-05|{s}", features_final_job.name) for s in SYMBOLS], "recorded: partitions"
        assert tick() == []

        compact_day(today - dt.timedelta(days=1))
        compact_day(today + dt.timedelta(days=3))  # a collector clock days ahead: not a partition, skipped
        assert tick() == [(f"{today - dt.timedelta(days=1)}|{s}", features_final_job.name) for s in SYMBOLS]


def test_todays_parts_request_one_refresh_not_a_final_build(tmp_path, monkeypatch):
    monkeypatch.setenv("HARVEST_SYMBOLS", SYMBOL)
    today = dt.datetime.now(dt.UTC).date()
    with dg.instance_for_test() as instance:
        resources = {"storage": HarvestStorage(data_root=str(tmp_path))}
        first = features_refresh(dg.build_sensor_context(instance=instance, cursor=None, resources=resources))
        assert first.run_requests == []
        [name] = write_registered_segments(tmp_path, instance, 1, day_start_ms(today) + 1000)
        assert compact(tmp_path, instance, name=name)

        second = features_refresh(dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources))

    assert [(str(r.partition_key), r.job_name) for r in second.run_requests] == [
        (f"{today}|{s}", features_refresh_job.name) for s in SYMBOLS
    ]

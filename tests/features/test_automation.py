"""The refresh sensor and the nightly schedule on a real Dagster instance, and the ``harvest features`` command."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from assets.resources import HarvestStorage
from harvest_pipeline.features.sources import day_start_ms
from harvest_pipeline.features.table import features_path
from sensors.features import features_nightly, features_refresh
from tests.features.rawdata import DAY, SYMBOL, T0, write_ticks, write_trades

REPO = Path(__file__).resolve().parents[2]


def test_refresh_sensor_requests_today_once_per_change_of_its_raw_parts(tmp_path):
    today = dt.datetime.now(dt.UTC).date()
    start = day_start_ms(today)
    write_trades(tmp_path / "parquet", [(start + 1_000, 1, "100", "1", False)], day=today)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        resources = {"storage": HarvestStorage(data_root=str(tmp_path))}

        def tick(cursor: str | None) -> dg.SensorResult:
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            return features_refresh(context)

        first = tick(None)
        assert [r.partition_key for r in first.run_requests] == [f"{today.isoformat()}|{SYMBOL}"]
        assert tick(first.cursor).run_requests == []
        late = write_trades(tmp_path / "parquet", [(start + 2_000, 2, "100", "1", True)], part="part-b", day=today)
        os.utime(late, ns=(late.stat().st_mtime_ns + 10**9,) * 2)
        assert len(tick(first.cursor).run_requests) == 1


def test_nightly_schedule_builds_yesterday_for_every_symbol():
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 1, 6, 0, 20, tzinfo=dt.UTC))
    requests = features_nightly(context)
    assert [(r.partition_key, r.run_key) for r in requests] == [(f"2026-01-05|{SYMBOL}", f"final|2026-01-05|{SYMBOL}")]


def test_features_command_writes_the_day_and_prints_a_summary(tmp_path):
    write_trades(tmp_path / "parquet", [(T0 + 1_000, 1, "100", "2", False), (T0 + 1_500, 2, "101", "1", True)])
    write_ticks(tmp_path / "parquet", [(T0 + 900, 1, "99.5", "1", "100.5", "1")])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "harvest_pipeline.cli", "features", "--date", DAY.isoformat(), "--symbol", SYMBOL]
    done = subprocess.run([*command, "--data", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"features_1s {SYMBOL} {DAY}: 86400 rows" in done.stdout
    assert "trades 2 in 1 non-empty seconds; volume 3; last close 101; end CVD 1" in done.stdout
    assert pq.read_table(features_path(tmp_path / "parquet", DAY, SYMBOL)).num_rows == 86_400

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


def harvest_features(data_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``harvest features --data data_root ARGS`` in its own process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "harvest_pipeline.cli", "features", "--data", str(data_root), *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)


def test_features_command_prints_a_summary_and_writes_only_when_asked(tmp_path):
    write_trades(tmp_path / "parquet", [(T0 + 1_000, 1, "100", "2", False), (T0 + 1_500, 2, "101", "1", True)])
    write_ticks(tmp_path / "parquet", [(T0 + 900, 1, "99.5", "1", "100.5", "1")])
    target = features_path(tmp_path / "parquet", DAY, SYMBOL)

    printed = harvest_features(tmp_path, "--date", DAY.isoformat(), "--symbol", SYMBOL)
    assert printed.returncode == 0, printed.stderr
    assert f"features_1s {SYMBOL} {DAY}: 86400 rows" in printed.stdout
    assert "trades 2 in 1 non-empty seconds; volume 3; last close 101; end CVD 1" in printed.stdout
    assert "recorded seconds 2;" in printed.stdout  # from the ticker received at 0.905 s to the last trade at 1.505 s
    assert not target.parent.exists(), "the Dagster asset owns the file: printing must not touch it"

    written = harvest_features(tmp_path, "--date", DAY.isoformat(), "--symbol", SYMBOL.lower(), "--write")
    assert written.returncode == 0, written.stderr
    assert f"written: {target}" in written.stdout
    assert pq.read_table(target).num_rows == 86_400
    assert [p.name for p in target.parent.iterdir()] == [target.name], "no temporary file is left behind"


def test_features_command_rejects_a_symbol_or_date_that_is_not_one(tmp_path):
    for args, message in (
        (("--symbol", "../..", "--date", DAY.isoformat()), "invalid symbol '../..': expected 2-20 letters or digits"),
        (("--symbol", "BTC/USDT", "--date", DAY.isoformat()), "invalid symbol 'BTC/USDT'"),
        (("--symbol", SYMBOL, "--date", "2026-02-30"), "invalid date '2026-02-30': expected a UTC date YYYY-MM-DD"),
        (("--symbol", SYMBOL, "--date", "20260302"), "invalid date '20260302'"),
    ):
        done = harvest_features(tmp_path, *args, "--write")
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    assert not any(tmp_path.rglob("*.parquet")) and not (tmp_path.parent / "kind=features_1s").exists()

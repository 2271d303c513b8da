"""The refresh sensor, the declared automation (nightly consolidation, features after a consolidation) on a real
Dagster instance, and the ``harvest features`` command."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from assets.completeness import completeness
from assets.consolidation import CONSOLIDATED_KINDS, daily_asset_key, daily_consolidation
from assets.features import features_1s
from assets.resources import HarvestStorage
from harvest_pipeline.definitions import defs
from harvest_pipeline.features.sources import day_start_ms
from harvest_pipeline.features.table import features_path
from harvest_pipeline.symbol_partitions import register_symbols
from sensors.features import features_final_job, features_refresh
from tests.features.rawdata import DAY, SYMBOL, T0, write_ticks, write_trades

REPO = Path(__file__).resolve().parents[2]


def test_refresh_sensor_requests_today_once_per_change_of_its_raw_parts(tmp_path):
    today = dt.datetime.now(dt.UTC).date()
    start = day_start_ms(today)
    write_trades(tmp_path / "parquet" / "market=usdm", [(start + 1_000, 1, "100", "1", False)], day=today)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        register_symbols(instance, [SYMBOL])  # as compaction does when it writes a symbol's first rows
        resources = {"storage": HarvestStorage(data_root=str(tmp_path))}

        def tick(cursor: str | None) -> dg.SensorResult:
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            return features_refresh(context)

        first = tick(None)
        assert [r.partition_key for r in first.run_requests] == [f"{today.isoformat()}|{SYMBOL}"]
        assert tick(first.cursor).run_requests == []
        late = write_trades(
            tmp_path / "parquet" / "market=usdm", [(start + 2_000, 2, "100", "1", True)], part="part-b", day=today
        )
        os.utime(late, ns=(late.stat().st_mtime_ns + 10**9,) * 2)
        assert len(tick(first.cursor).run_requests) == 1


def requested(result: dg.EvaluateAutomationConditionsResult) -> set[tuple[str, str | None]]:
    """(asset, partition) pairs one automation evaluation requested."""
    return {
        (key.to_user_string(), partition)
        for key in (*map(daily_asset_key, CONSOLIDATED_KINDS), completeness.key, features_1s.key)
        for partition in result.get_requested_partitions(key)
    }


def at(day: dt.date, hour: int, minute: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)


def test_nightly_automation_consolidates_yesterday_and_builds_its_features_once_after_0020_utc(tmp_path):
    yesterday = f"{DAY}|{SYMBOL}"
    nightly = {(daily_asset_key(kind).to_user_string(), yesterday) for kind in CONSOLIDATED_KINDS}
    after = DAY + dt.timedelta(days=1)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        register_symbols(instance, [SYMBOL])

        def evaluate(when: dt.datetime, cursor=None) -> dg.EvaluateAutomationConditionsResult:
            return dg.evaluate_automation_conditions(defs, instance, evaluation_time=when, cursor=cursor)

        before = evaluate(at(after, 0, 10))
        assert requested(before) == set(), "nothing before the 00:20 tick"
        tick = evaluate(at(after, 0, 21), before.cursor)
        built = {("completeness", yesterday), ("features_1s", yesterday)}
        assert requested(tick) == nightly | built, "one day x symbol: daily kinds, certificate, features"
        assert requested(evaluate(at(after, 0, 40), tick.cursor)) == set(), "once per tick"
        next_night = evaluate(at(after + dt.timedelta(days=1), 0, 21), tick.cursor)
        assert {partition for _, partition in requested(next_night)} == {f"{after}|{SYMBOL}"}


def test_a_past_days_consolidation_rebuilds_its_features_by_automation(tmp_path):
    write_trades(tmp_path / "parquet" / "market=usdm", [(T0 + 1_000, 1, "100", "2", False)])
    write_trades(tmp_path / "parquet" / "market=usdm", [(T0 + 2_000, 2, "101", "1", True)], part="part-b")  # late data
    partition = dg.MultiPartitionKey({"date": DAY.isoformat(), "symbol": SYMBOL})
    resources = {"storage": HarvestStorage(data_root=str(tmp_path))}
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        register_symbols(instance, [SYMBOL])
        quiet = dg.evaluate_automation_conditions(defs, instance)
        assert requested(quiet) == set()

        consolidated = dg.materialize(
            [daily_consolidation], partition_key=partition, instance=instance, resources=resources
        )  # what a features_final_job run of the refresh sensor does
        assert consolidated.success and features_final_job.selection.resolve(defs.resolve_asset_graph()) == {
            daily_asset_key(kind) for kind in CONSOLIDATED_KINDS
        }
        after = dg.evaluate_automation_conditions(defs, instance, cursor=quiet.cursor)
        assert requested(after) == {("completeness", str(partition)), ("features_1s", str(partition))}
        built = dg.materialize(
            [completeness, features_1s], partition_key=partition, instance=instance, resources=resources
        )
        assert built.success
        trades = (
            pq.read_table(features_path(tmp_path / "parquet" / "market=usdm", DAY, SYMBOL))
            .column("trade_count")
            .to_pylist()
        )
        assert trades[:3] == [0, 1, 1], "the features hold the late trade"
        assert requested(dg.evaluate_automation_conditions(defs, instance, cursor=after.cursor)) == set()


def harvest_features(data_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``harvest features --data data_root ARGS`` in its own process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "harvest_pipeline.cli", "features", "--data", str(data_root), *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)


def test_features_command_prints_a_summary_and_writes_only_when_asked(tmp_path):
    write_trades(
        tmp_path / "parquet" / "market=usdm", [(T0 + 1_000, 1, "100", "2", False), (T0 + 1_500, 2, "101", "1", True)]
    )
    write_ticks(tmp_path / "parquet" / "market=usdm", [(T0 + 900, 1, "99.5", "1", "100.5", "1")])
    target = features_path(tmp_path / "parquet" / "market=usdm", DAY, SYMBOL)

    printed = harvest_features(tmp_path, "--date", DAY.isoformat(), "--symbol", SYMBOL)
    assert printed.returncode == 0, printed.stderr
    assert f"features_1s {SYMBOL} {DAY}: 86400 rows" in printed.stdout
    assert "trades 2 in 1 non-empty seconds; volume 3; last close 101; end CVD 1" in printed.stdout
    assert "recorded seconds 2;" in printed.stdout  # from the ticker received at 0.905 s to the last trade at 1.505 s
    assert "L1 from bookticker;" in printed.stdout
    assert not target.parent.exists(), "the Dagster asset owns the file: printing must not touch it"

    written = harvest_features(tmp_path, "--date", DAY.isoformat(), "--symbol", SYMBOL.lower(), "--write")
    assert written.returncode == 0, written.stderr
    assert f"written: {target}" in written.stdout
    assert pq.read_table(target).num_rows == 86_400
    assert [p.name for p in target.parent.iterdir()] == [target.name], "no temporary file is left behind"


def test_features_command_rejects_a_symbol_or_date_that_is_not_one(tmp_path):
    for args, message in (
        (
            ("--symbol", "../..", "--date", DAY.isoformat()),
            "invalid symbol '../..': expected 2-20 upper-case letters, digits or _",
        ),
        (("--symbol", "BTC/USDT", "--date", DAY.isoformat()), "invalid symbol 'BTC/USDT'"),
        (("--symbol", SYMBOL, "--date", "2026-02-30"), "invalid date '2026-02-30': expected a UTC date YYYY-MM-DD"),
        (("--symbol", SYMBOL, "--date", "20260302"), "invalid date '20260302'"),
    ):
        done = harvest_features(tmp_path, *args, "--write")
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    assert not any(tmp_path.rglob("*.parquet")) and not (tmp_path.parent / "kind=features_1s").exists()

"""harvest's Dagster instance on a real PostgreSQL server: the URL rule, the generated dagster.yaml, an operator's file
left alone, the DuckDB pool, and the whole pipeline (sensor, run queue, two concurrent compaction runs, features)
driven by a real ``dagster-daemon``."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml  # type: ignore[import-untyped]

from assets.consolidation import CONSOLIDATED_KINDS, daily_asset_key
from harvest_pipeline import segments
from harvest_pipeline.dagster_home import (
    DEQUEUE_INTERVAL_S,
    DUCKDB_POOL,
    MAX_CONCURRENT_RUNS,
    dagster_yaml,
    ensure_dagster_home,
    validate_storage_url,
)
from harvest_pipeline.features.table import features_path
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.store import kind_dir, visible_files
from tests.compaction.frames import MS, SegmentBuilder, TrafficMix
from tests.ops.dagster_processes import BIN, REPO_ROOT, harvest_env, start_daemon, wait_for_runs, wait_for_the_catalog
from tests.ops.postgres_server import PASSWORD, PostgresServer, running_postgres
from tests.processes import stop_process

SYMBOLS = ("BTCUSDT", "ETHUSDT")
START_MS = 1_767_225_600_000
"""2026-01-01 00:00 UTC."""
DAY = "2026-01-01"
STREAM_KINDS = {"aggTrade": "prices", "bookTicker": "bookticker", "depth@100ms": "orderbook"}


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with running_postgres() as running:
        yield running


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return DataPaths.from_root(tmp_path / "data")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://harvest:hunter2@127.0.0.1:5432/dagster",
        "postgres://harvest:hunter2@127.0.0.1/dagster",
        "postgresql+psycopg://harvest:hunter2@127.0.0.1/dagster",
        "sqlite:///dagster.db",
        "127.0.0.1:5432/dagster",
    ],
)
def test_urls_other_than_postgresql_psycopg2_are_rejected_naming_the_form_to_use(url: str) -> None:
    with pytest.raises(ValueError, match=r"postgresql\+psycopg2://") as raised:
        validate_storage_url(url)
    assert "hunter2" not in str(raised.value), "the password is never echoed"


def test_a_url_without_a_database_is_rejected() -> None:
    with pytest.raises(ValueError, match="names no database"):
        validate_storage_url("postgresql+psycopg2://harvest@127.0.0.1:5432")


def test_the_generated_yaml_keeps_every_storage_on_postgresql_and_one_duckdb_step_at_a_time() -> None:
    url = "postgresql+psycopg2://harvest:p%40ss@db.internal:6432/dagster?sslmode=require"
    config = yaml.safe_load(dagster_yaml(url))
    assert config["storage"] == {"postgres": {"postgres_url": url}}
    assert config["concurrency"] == {
        "runs": {"max_concurrent_runs": MAX_CONCURRENT_RUNS},
        "pools": {"default_limit": 1, "granularity": "op"},
    }
    assert config["run_queue"] == {"dequeue_interval_seconds": DEQUEUE_INTERVAL_S, "dequeue_use_threads": True}
    assert "harvest/duckdb" not in dagster_yaml(url), "no dead tag limit"
    assert config["telemetry"] == {"enabled": False} and config["run_retries"]["enabled"]
    assert config["run_monitoring"]["enabled"] and config["retention"]["sensor"]["purge_after_days"]["skipped"] == 1
    assert "storage" not in yaml.safe_load(dagster_yaml()), "without a URL the instance stays on SQLite"


def test_the_sqlite_instance_dagster_opens_has_the_run_and_pool_limits(paths: DataPaths) -> None:
    ensure_dagster_home(paths)
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        assert type(instance.run_storage).__name__.startswith("Sqlite")
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == MAX_CONCURRENT_RUNS
        assert_duckdb_pool_allows_one(instance)


def assert_duckdb_pool_allows_one(instance: dg.DagsterInstance) -> None:
    """The pool exists with one slot before any step claims it: created lazily, two runs racing to create it on
    PostgreSQL fail one step on the unique key."""
    assert instance.global_op_concurrency_default_limit == 1
    assert DUCKDB_POOL in instance.event_log_storage.get_concurrency_keys()
    assert instance.event_log_storage.get_concurrency_info(DUCKDB_POOL).slot_count == 1


def test_an_existing_yaml_on_sqlite_is_not_silently_kept_when_postgresql_is_asked_for(paths: DataPaths) -> None:
    ensure_dagster_home(paths)
    before = (paths.dagster_home / "dagster.yaml").read_bytes()
    with pytest.raises(ValueError) as raised:
        ensure_dagster_home(paths, "postgresql+psycopg2://harvest:hunter2@127.0.0.1:5432/dagster")
    message = str(raised.value)
    assert str(paths.dagster_home / "dagster.yaml") in message and "not on PostgreSQL" in message
    assert 'postgres_url: "postgresql+psycopg2://harvest:***@127.0.0.1:5432/dagster"' in message
    assert "hunter2" not in message
    assert (paths.dagster_home / "dagster.yaml").read_bytes() == before, "the operator's file is never rewritten"


def test_an_instance_on_postgresql_is_created_once_and_checked_against_the_url_after(
    server: PostgresServer, paths: DataPaths
) -> None:
    url = server.create_database("created_once")
    ensure_dagster_home(paths, url)
    config = paths.dagster_home / "dagster.yaml"
    assert config.stat().st_mode & 0o077 == 0, "a file holding a password is readable by its owner only"
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert_duckdb_pool_allows_one(instance)
    with server.superuser() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE datname = 'created_once'")
        assert cursor.fetchall()

    ensure_dagster_home(paths, url)  # same database: fine
    ensure_dagster_home(paths)  # no flag: the file decides
    other = server.create_database("another_one")
    with pytest.raises(ValueError, match=r"keeps Dagster's storage on postgresql\+psycopg2://harvest:\*\*\*@"):
        ensure_dagster_home(paths, other)


def test_a_password_from_the_environment_keeps_it_out_of_the_file(
    server: PostgresServer, paths: DataPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.create_database("password_from_env")
    without_password = server.url("password_from_env", password=None)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with pytest.raises(RuntimeError, match="no password supplied.*PGPASSWORD"):
        ensure_dagster_home(paths, without_password)

    monkeypatch.setenv("PGPASSWORD", PASSWORD)  # libpq's own variable, read by psycopg2
    ensure_dagster_home(paths, without_password)
    assert PASSWORD not in (paths.dagster_home / "dagster.yaml").read_text()

    # the operator's other choice: a postgres_db block whose password is an env var (harvest accepts it as the same db)
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("HARVEST_TEST_PG_PASSWORD", PASSWORD)
    edited = yaml.safe_load((paths.dagster_home / "dagster.yaml").read_text())
    edited["storage"] = {
        "postgres": {
            "postgres_db": {
                "username": "harvest",
                "password": {"env": "HARVEST_TEST_PG_PASSWORD"},
                "hostname": "127.0.0.1",
                "port": server.port,
                "db_name": "password_from_env",
                "scheme": "postgresql+psycopg2",
            }
        }
    }
    (paths.dagster_home / "dagster.yaml").write_text(yaml.safe_dump(edited))
    ensure_dagster_home(paths, url)
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        assert instance.get_runs(limit=1) == []


def write_segments(paths: DataPaths, count: int, frames: int) -> Counter[tuple[str, str]]:
    """``count`` sealed segments of mixed traffic for both symbols; returns the frames written per (symbol, kind)."""
    mix = TrafficMix(symbols=SYMBOLS, start_ms=START_MS)
    written: Counter[tuple[str, str]] = Counter()
    for index in range(count):
        opened_ms = START_MS + index * frames
        builder = SegmentBuilder(paths.root, opened_at_ns=opened_ms * MS)
        for stream, raw, event_ms in mix.frames(frames):
            builder.frame(stream, raw, event_ms + 3)
            symbol, _, kind = stream.partition("@")
            written[symbol.upper(), STREAM_KINDS[kind]] += 1
        builder.seal(segments.segment_name(opened_ms * MS, "test", "b00t", index + 1))
    return written


def overlap_s(a, b) -> float:
    """How long two run (or step) records were both in progress; negative when one ended before the other began."""
    return min(a.end_time, b.end_time) - max(a.start_time, b.start_time)


def materialize_features_concurrently(paths: DataPaths, tmp_path: Path) -> None:
    """``dagster asset materialize`` of one day's consolidation and features, for every symbol at once."""
    selection = ",".join([*(daily_asset_key(kind).to_user_string() for kind in CONSOLIDATED_KINDS), "features_1s"])
    processes = []
    for symbol in SYMBOLS:
        command = f"asset materialize -m harvest_pipeline.definitions --select {selection} --partition {DAY}|{symbol}"
        log = tmp_path / f"materialize-{symbol}.log"
        output = log.open("wb")
        process = subprocess.Popen(
            [str(BIN / "dagster"), *command.split()],
            cwd=REPO_ROOT,
            env=harvest_env(paths, SYMBOLS, DAY),
            stdout=output,
            stderr=output,
        )
        processes.append((process, log))
    for process, log in processes:
        assert process.wait(timeout=120) == 0, f"{process.args}:\n{log.read_text()[-3000:]}"


def test_on_postgresql_two_runs_compact_concurrently_and_duckdb_steps_take_turns(
    server: PostgresServer, paths: DataPaths, tmp_path: Path
) -> None:
    batch = 4
    ensure_dagster_home(paths, server.create_database("pipeline"))
    log = tmp_path / "daemon.log"
    daemon = start_daemon(paths, log, harvest_env(paths, SYMBOLS, DAY, HARVEST_COMPACTION_BATCH=str(batch)))
    try:
        with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
            wait_for_the_catalog(instance, paths, time.monotonic() + 90, log)
    finally:
        stop_process(daemon, timeout_s=20)
    written = write_segments(paths, count=2 * batch, frames=15_000)  # all there when the sensor first looks
    started = time.monotonic()
    daemon = start_daemon(paths, log, harvest_env(paths, SYMBOLS, DAY, HARVEST_COMPACTION_BATCH=str(batch)))
    try:
        with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
            compactions = wait_for_runs(instance, "compact_segments", 2, started + 90, log)
            compacted_s = time.monotonic() - started
    finally:
        stop_process(daemon, timeout_s=20)

    features_started = time.monotonic()
    materialize_features_concurrently(paths, tmp_path)
    features_s = time.monotonic() - features_started

    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        assert len(instance.get_dynamic_partitions("segments")) == 2 * batch, "registered by the sealed_segments sensor"
        compactions = instance.get_run_records(filters=dg.RunsFilter(job_name="compact_segments"))
        assert [r.dagster_run.status for r in compactions] == [dg.DagsterRunStatus.SUCCESS] * 2
        compaction_overlap = overlap_s(*compactions)
        assert compaction_overlap > 0, "the run queue ran the two compaction runs at the same time"
        features = instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/partition/date": DAY}))
        assert [r.dagster_run.status for r in features] == [dg.DagsterRunStatus.SUCCESS] * len(SYMBOLS)
        features_overlap = overlap_s(*features)
        assert features_overlap > 0
        steps = [instance.get_run_step_stats(r.dagster_run.run_id) for r in features]
        assert sorted(step.step_key for step in steps[0]) == ["daily_consolidation", "features_1s"]
        for one in steps[0]:
            for other in steps[1]:
                assert overlap_s(one, other) <= 0, f"pool {DUCKDB_POOL}: {one.step_key} and {other.step_key} overlap"
        unfinished = [r.run_id for r in instance.get_runs() if not r.is_finished]
        assert not unfinished, f"runs left in progress: {unfinished}"

    for (symbol, kind), frames_written in written.items():
        files = visible_files(kind_dir(paths.market_parquet(), DAY, symbol, kind))
        assert [f.name.startswith("day-") for f in files] == [True], "consolidated into one day file"
        assert pq.read_table(files[0]).num_rows == frames_written, (symbol, kind)
    for symbol in SYMBOLS:
        table = pq.read_table(features_path(paths.market_parquet(), dt.date.fromisoformat(DAY), symbol))
        assert table.num_rows == 86_400
        assert sum(table.column("trade_count").to_pylist()) == written[symbol, "prices"]
    print(
        f"\ncompaction: 2 runs overlapping {compaction_overlap:.1f} s, done {compacted_s:.1f} s after the daemon "
        f"started; features: {len(SYMBOLS)} runs overlapping {features_overlap:.1f} s, done in {features_s:.1f} s"
    )

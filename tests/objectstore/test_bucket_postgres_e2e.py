"""The deployment of docs/scaling.md on one machine: two collectors on their own data roots ship into a real SeaweedFS
bucket, which goes down for 30 s while they record (both backlogs drain after); one Dagster on a real PostgreSQL
server, driven by ``dagster-daemon`` alone, fetches their segments (``bucket_segments``), compacts them
(``sealed_segments`` and the run queue), then the day's consolidation, certificate and features are materialized
through the ``dagster`` CLI; everything is read back through the reader API: every trade the simulator issued, once,
in ``prices`` and counted by ``features_1s``; then ``publish_parquet`` mirrors the store to the bucket, and the
reader API reads the same tables from there."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest

import harvest_pipeline as hp
from assets.consolidation import CONSOLIDATED_KINDS, daily_asset_key
from harvest_pipeline.dagster_home import ensure_dagster_home
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.status import COMPACTION_MARKER_ASSET
from tests.e2e.healing import reconcile_trades
from tests.objectstore.two_hosts import bucket_env, record_on_two_hosts
from tests.ops.dagster_processes import BIN, REPO_ROOT, failure_messages, harvest_env, start_daemon
from tests.ops.postgres_server import running_postgres
from tests.processes import stop_process

SYMBOLS = ("BTCUSDT", "ETHUSDT")
OUTAGE_S = 30.0
"""The S3 server is down this long while both collectors record; their backlogs must drain after."""
pytestmark = pytest.mark.timeout(420)


def wait_until_compacted(instance: dg.DagsterInstance, names: set[str], deadline: float, log: Path) -> None:
    """Until every segment in ``names`` is compacted (its ``events`` partition materialized), failing fast on a
    failed run."""
    marker = dg.AssetKey(COMPACTION_MARKER_ASSET)
    while time.monotonic() < deadline:
        failed = [r.run_id for r in instance.get_runs() if r.status == dg.DagsterRunStatus.FAILURE]
        assert not failed, [failure_messages(instance, run_id) for run_id in failed]
        if names <= instance.get_materialized_partitions(marker):
            return
        time.sleep(0.5)
    raise AssertionError(f"not every segment compacted in time; daemon log {log}:\n{log.read_text()[-3000:]}")


def dagster_cli(env: dict[str, str], arguments: list[str], log: Path) -> None:
    """One ``dagster`` command on harvest's definitions, as an operator runs it; its output goes to ``log``."""
    with log.open("wb") as output:
        done = subprocess.run(
            [str(BIN / "dagster"), *arguments, "-m", "harvest_pipeline.definitions"],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=180,
        )
    assert done.returncode == 0, log.read_text()[-3000:]


def materialize_day(env: dict[str, str], day: str, symbol: str, log: Path) -> None:
    """``dagster asset materialize`` of the day's consolidation, certificate and features of ``symbol``."""
    keys = [daily_asset_key(kind).to_user_string() for kind in CONSOLIDATED_KINDS]
    selection = ",".join([*keys, "completeness", "features_1s"])
    dagster_cli(env, ["asset", "materialize", "--select", selection, "--partition", f"{day}|{symbol}"], log)


def test_two_collectors_a_bucket_and_one_dagster_on_postgresql(tmp_path, seaweed, monkeypatch):
    accounting, in_bucket = record_on_two_hosts(tmp_path, seaweed, outage_s=OUTAGE_S)
    day = dt.datetime.now(dt.UTC).date().isoformat()
    paths = DataPaths.from_root(tmp_path / "dagster-host" / "data")
    with running_postgres() as server:
        ensure_dagster_home(paths, server.create_database("scaling"))
        env = harvest_env(paths, SYMBOLS, day, **bucket_env(seaweed))
        log = tmp_path / "daemon.log"
        daemon = start_daemon(paths, log, env)
        try:
            with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
                wait_until_compacted(instance, in_bucket, time.monotonic() + 180, log)
        finally:
            stop_process(daemon, timeout_s=20)
        for symbol in SYMBOLS:
            materialize_day(env, day, symbol, tmp_path / f"materialize-{symbol}.log")
        dagster_cli(env, ["job", "execute", "-j", "publish_parquet"], tmp_path / "publish.log")
        with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
            assert set(instance.get_dynamic_partitions("segments")) == in_bucket
            unfinished = [r.run_id for r in instance.get_runs() if not r.is_finished]
            assert not unfinished, f"runs left in progress: {unfinished}"

    store = hp.open(paths.root)
    for symbol in SYMBOLS:
        rows = store.table("completeness", symbols=[symbol]).to_arrow_table().to_pylist()
        certificate = {dt.date.fromisoformat(day): rows}
        result = reconcile_trades(paths.root, accounting, certificate, symbol)
        assert result.missing == [] and result.declared == [], symbol
        ids = store.table("prices", symbols=[symbol]).to_arrow_table().column("agg_trade_id").to_pylist()
        assert len(ids) == len(set(ids)) == result.issued, f"{symbol}: every issued trade once"
        counted = store.table("features_1s", symbols=[symbol]).to_arrow_table().column("trade_count").to_pylist()
        assert sum(count or 0 for count in counted) == result.issued, f"{symbol}: features count every trade"

    for name, value in bucket_env(seaweed).items():
        monkeypatch.setenv(name, value)
    published = hp.open(bucket_env(seaweed)["HARVEST_OBJECT_STORE"])
    for kind in ("prices", "completeness", "features_1s"):
        for symbol in SYMBOLS:
            mine, theirs = store.table(kind, symbols=[symbol]), published.table(kind, symbols=[symbol])
            assert theirs.to_arrow_table() == mine.to_arrow_table(), f"{kind} {symbol} read from the bucket"

"""The Parquet store published to a real SeaweedFS bucket and read back through ``hp.open("s3://…")``: every kind
equals the local read row for row (a day in parts and a consolidated day, across midnight), a consolidation is one
manifest swap, retired objects stay readable for the grace period and go after it, an object no manifest lists is
never read, an unchanged folder costs no request; the Dagster job and its schedule do the same."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import harvest_pipeline as hp
from assets.publication import publish_parquet, publish_parquet_schedule
from assets.resources import HarvestStorage
from harvest_pipeline.objectstore import BucketLocation, ObjectStore
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.store.consolidation import consolidate
from harvest_pipeline.store.identity import DEDUP_KEYS
from harvest_pipeline.store.publish import MANIFEST, publish_store, read_manifest, state_path_of
from tests.objectstore.seaweed import SeaweedS3
from tests.reading.conftest import SYMBOLS, build_store

PREFIX = "team"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """A data root the real pipeline wrote across midnight (``tests/reading``): day one consolidated, day two not."""
    data_root, _, _ = build_store(tmp_path_factory.mktemp("store"))
    return data_root


def bucket_of(seaweed: SeaweedS3) -> ObjectStore:
    return ObjectStore(BucketLocation(seaweed.bucket, PREFIX), seaweed.filesystem())


def point_at(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**seaweed.env(), "HARVEST_S3_ENDPOINT": seaweed.endpoint}.items():
        monkeypatch.setenv(name, value)


def assert_same_store(local: hp.Store, remote: hp.Store) -> int:
    """Every kind of every symbol reads the same rows in the same order from both; returns the rows compared."""
    assert (remote.markets(), remote.dates(), remote.symbols()) == (local.markets(), local.dates(), local.symbols())
    compared = 0
    for kind in local.kinds():
        mine, theirs = local.table(kind).to_arrow_table(), remote.table(kind).to_arrow_table()
        assert theirs.schema == mine.schema and theirs.to_pylist() == mine.to_pylist(), kind
        compared += mine.num_rows
    for symbol in SYMBOLS:
        assert remote.gaps(symbol).to_arrow_table() == local.gaps(symbol).to_arrow_table()
        assert remote.bars(symbol, "1m").to_arrow_table() == local.bars(symbol, "1m").to_arrow_table()
    return compared


def test_the_published_store_reads_exactly_like_the_local_one_through_every_change(
    recorded, seaweed, monkeypatch, tmp_path
):
    point_at(seaweed, monkeypatch)
    data = copy_of(recorded, tmp_path)
    paths = DataPaths.from_root(data)
    bucket = bucket_of(seaweed)
    state = state_path_of(data)

    first = publish_store(paths.parquet, bucket, state)
    assert first.published and first.uploaded == sum(1 for _ in paths.parquet.rglob("*.parquet"))
    local, remote = hp.open(data), hp.open(f"s3://{seaweed.bucket}/{PREFIX}")
    assert assert_same_store(local, remote) > 1000

    again = publish_store(paths.parquet, bucket, state)
    assert (again.published, again.uploaded, again.deleted) == ([], 0, 0), "an unchanged folder costs no request"

    day_two = max(local.dates())
    folder = f"market=usdm/date={day_two}/symbol=BTCUSDT/kind=prices"
    parts_before = read_manifest(bucket, f"parquet/{folder}")
    assert parts_before is not None and len(parts_before) > 1, "day two is still in parts"
    for symbol in SYMBOLS:
        for kind in DEDUP_KEYS:
            consolidate(paths.market_parquet(), day_two, symbol, kind)
    swapped = publish_store(paths.parquet, bucket, state)
    assert folder in swapped.published and swapped.deleted == 0, "retired parts wait for their grace"
    [day_file] = read_manifest(bucket, f"parquet/{folder}") or []
    assert day_file.rsplit("/", 1)[-1].startswith("day-")
    assert all(bucket.exists(part) for part in parts_before), "a reader holding the old manifest can still read"
    assert assert_same_store(hp.open(data), hp.open(f"s3://{seaweed.bucket}/{PREFIX}")) > 1000

    stray = f"parquet/{folder}/part-stray.0123456789abcdef.parquet"
    bucket.put_bytes(stray, pq_bytes(pa.table({"agg_trade_id": [1]})))  # an interrupted pass: no manifest lists it
    assert assert_same_store(hp.open(data), hp.open(f"s3://{seaweed.bucket}/{PREFIX}")) > 1000

    sql = run_harvest_sql(f"s3://{seaweed.bucket}/{PREFIX}", "SELECT count(*) FROM prices; SELECT count(*) FROM events")
    local_counts = [hp.open(data).table(kind).count("*").fetchall()[0][0] for kind in ("prices", "events")]
    assert [int(line) for line in sql.split() if line.isdigit()] == local_counts, sql

    collected = publish_store(paths.parquet, bucket, state, grace_s=0.0)
    assert collected.published == [] and collected.deleted >= len(parts_before) + 1
    left = {info.name for info in bucket.list_objects(f"parquet/{folder}")}
    assert left == {f"parquet/{folder}/{MANIFEST}", day_file}


def run_harvest_sql(root: str, statements: str) -> str:
    """``harvest sql --data s3://… -c`` in its own process (the environment points it at the S3 server)."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "harvest"), "sql", "--data", root, "-c", statements],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def copy_of(recorded: Path, tmp_path: Path) -> Path:
    """A private copy of the shared store (publishing writes its state file into the data root)."""
    data = tmp_path / "data"
    shutil.copytree(recorded, data)
    return data


def pq_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def test_the_job_publishes_and_the_schedule_runs_it_only_with_a_bucket(recorded, seaweed, monkeypatch, tmp_path):
    data = copy_of(recorded, tmp_path)
    storage = HarvestStorage(data_root=str(data))
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, resources={"storage": storage})
        assert isinstance(publish_parquet_schedule(context), dg.SkipReason)
        point_at(seaweed, monkeypatch)
        monkeypatch.setenv("HARVEST_OBJECT_STORE", f"s3://{seaweed.bucket}/{PREFIX}")
        context = dg.build_schedule_context(instance=instance, resources={"storage": storage})
        assert isinstance(publish_parquet_schedule(context), dg.RunRequest)
        result = publish_parquet.execute_in_process(instance=instance, resources={"storage": storage})
        assert result.success and result.output_for_node("publish_changed_folders") > 0
    remote = hp.open(f"s3://{seaweed.bucket}/{PREFIX}")
    assert remote.dates() == hp.open(data).dates() and len(remote.dates()) == 2
    assert remote.table("prices").to_arrow_table() == hp.open(data).table("prices").to_arrow_table()

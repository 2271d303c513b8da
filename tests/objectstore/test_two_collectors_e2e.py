"""Two collectors on two "hosts" (their own data roots) ship into one SeaweedFS bucket: ``tokyo1`` records BTCUSDT and
ETHUSDT, ``frankfurt1`` records BTCUSDT again (redundant capture) and is killed with -9 midway. A third host runs
Dagster: ``bucket_segments`` fetches every segment of both, ``sealed_segments`` requests their compaction, the real
compaction asset writes Parquet, the nightly consolidation merges the redundant captures by exchange id, and the
certificate finds no hole; the reader API returns every trade the simulator issued exactly once."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

import harvest_pipeline as hp
from assets.compaction import SEGMENT_PARTITIONS, raw_market_data
from assets.resources import HarvestStorage
from harvest_pipeline import segments
from sensors.bucket import bucket_segments
from sensors.segments import sealed_segments
from tests.e2e.healing import certify_days, reconcile_trades
from tests.objectstore.seaweed import SeaweedS3
from tests.objectstore.two_hosts import bucket_env, record_on_two_hosts


def compact_on_the_dagster_host(tmp_path: Path, seaweed: SeaweedS3, in_bucket: set[str], monkeypatch) -> Path:
    """The third host: ``bucket_segments`` fetches every segment, ``sealed_segments`` requests their compaction, the
    compaction asset runs each request on a Dagster instance; returns that host's data root."""
    for name, value in bucket_env(seaweed).items():
        monkeypatch.setenv(name, value)
    data_root = tmp_path / "dagster-host" / "data"
    storage = HarvestStorage(data_root=str(data_root))
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"storage": storage})
        fetched = bucket_segments(context)
        assert "fetched" in str(fetched.skip_message)
        local = {s.name for s in segments.list_sealed_segments(data_root / "segments" / "sealed")}
        assert local == in_bucket, "every complete segment of both collectors is fetched"
        again = bucket_segments(
            dg.build_sensor_context(instance=instance, cursor=context.cursor, resources={"storage": storage})
        )
        assert "nothing new" in str(again.skip_message)

        result = sealed_segments(dg.build_sensor_context(instance=instance, resources={"storage": storage}))
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        keys = instance.get_dynamic_partitions(SEGMENT_PARTITIONS.name)
        assert set(keys) == in_bucket
        for request in result.run_requests or []:
            outcome = dg.materialize(
                [raw_market_data], instance=instance, resources={"storage": storage}, tags=request.tags
            )
            assert outcome.success
            assert (
                request.tags[ASSET_PARTITION_RANGE_START_TAG] in keys
                and request.tags[ASSET_PARTITION_RANGE_END_TAG] in keys
            )
    return data_root


def test_two_collectors_one_bucket_one_dagster_every_trade_once(tmp_path, seaweed, monkeypatch):
    accounting, in_bucket = record_on_two_hosts(tmp_path, seaweed)
    assert {segments.segment_collector_id(name) for name in in_bucket} == {"tokyo1", "frankfurt1"}
    data_root = compact_on_the_dagster_host(tmp_path, seaweed, in_bucket, monkeypatch)

    parquet = data_root / "parquet" / "market=usdm"
    parts = list(parquet.glob("date=*/symbol=BTCUSDT/kind=prices/part-*.parquet"))
    assert {segments.segment_collector_id(p.stem.removeprefix("part-")) for p in parts} == {"tokyo1", "frankfurt1"}
    captured = duckdb.sql(f"SELECT count(*), count(DISTINCT agg_trade_id) FROM read_parquet({[str(p) for p in parts]})")
    rows, distinct = captured.fetchall()[0]
    assert rows > distinct, "both captured the same BTCUSDT trades before the merge"
    certificates = {symbol: certify_days(parquet, symbol) for symbol in ("BTCUSDT", "ETHUSDT")}
    for symbol in ("BTCUSDT", "ETHUSDT"):
        result = reconcile_trades(data_root, accounting, certificates[symbol], symbol)
        assert result.missing == [] and result.declared == [], symbol
        trades = hp.open(data_root).table("prices", symbols=[symbol]).to_arrow_table()
        ids = trades.column("agg_trade_id").to_pylist()
        assert len(ids) == len(set(ids)) == result.issued, f"{symbol}: every issued trade once, redundant or not"


def test_what_both_collectors_missed_is_left_as_a_hole_after_the_merge_and_declared(tmp_path, seaweed, monkeypatch):
    """Every connection of both is cut at once (REST backfill off): the trades neither received are the holes the
    merged day's certificate reports, each declared by a collector's record, and nothing else is missing."""
    accounting, in_bucket = record_on_two_hosts(tmp_path, seaweed, drop_all=True)
    data_root = compact_on_the_dagster_host(tmp_path, seaweed, in_bucket, monkeypatch)
    parquet = data_root / "parquet" / "market=usdm"
    certificates = certify_days(parquet, "BTCUSDT")
    result = reconcile_trades(data_root, accounting, certificates, "BTCUSDT")
    assert result.missing == [], "every trade not stored lies in a declared hole"
    assert result.declared, "the trades both collectors missed are a hole after the merge"
    stored = sum(result.stored_by_source.values())
    holes = sum(high - low + 1 for low, high, _ in result.declared)
    assert stored + holes == result.issued, "stored once, or in a hole, never both"


pytestmark = pytest.mark.timeout(300)

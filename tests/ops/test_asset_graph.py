"""The asset graph as Dagster loads it: one lineage from the sealed segments to ``features_1s``, every asset described
the same way, and automation that stays cheap with a realistic number of segment partitions."""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg
import pyarrow.parquet as pq

from assets.compaction import RAW_KIND_KEYS, SEGMENT_PARTITIONS
from assets.consolidation import CONSOLIDATED_KINDS, daily_asset_key
from harvest_pipeline.dagster_home import DUCKDB_POOL
from harvest_pipeline.definitions import defs
from harvest_pipeline.schema import BOOK_KINDS, FEATURES_1S, RAW_KINDS
from harvest_pipeline.schema import COMPLETENESS as COMPLETENESS_SCHEMA
from harvest_pipeline.symbol_partitions import register_symbols
from tests.ops.compacted import compact, write_registered_segments

SOURCE = dg.AssetKey("sealed_segments")
FEATURES = dg.AssetKey("features_1s")
COMPLETENESS = dg.AssetKey("completeness")
BOOK_KEYS = {dg.AssetKey(kind): BOOK_KINDS[kind] for kind in BOOK_KINDS}
TRADE_BACKFILL = dg.AssetKey("trade_backfill")
"""Launched by hand, writes a segment (not a table): no column schema, no freshness policy."""
CATALOG = dg.AssetKey("reading_catalog")
"""A DuckDB file of views, not a table: no column schema."""
SPECS = {spec.key: spec for spec in defs.resolve_all_asset_specs()}


def upstream_of(key: dg.AssetKey) -> set[dg.AssetKey]:
    """Every asset ``key`` reads from, directly or through others."""
    seen: set[dg.AssetKey] = set()
    todo = [key]
    while todo:
        for dep in SPECS[todo.pop()].deps:
            if dep.asset_key not in seen:
                seen.add(dep.asset_key)
                todo.append(dep.asset_key)
    return seen


def test_features_1s_reads_back_through_daily_and_raw_kinds_to_the_sealed_segments():
    upstream = upstream_of(FEATURES)
    for kind in ("prices", "bookticker", "events"):
        assert {daily_asset_key(kind), RAW_KIND_KEYS[kind], SOURCE} <= upstream, kind
    for kind in CONSOLIDATED_KINDS:
        assert upstream_of(daily_asset_key(kind)) == {RAW_KIND_KEYS[kind], SOURCE}
    certified = ("prices", "orderbook", "depth_snapshot", "events")
    assert {dep.asset_key for dep in SPECS[COMPLETENESS].deps} == set(map(daily_asset_key, certified))
    assert COMPLETENESS in {dep.asset_key for dep in SPECS[FEATURES].deps}, "a day's features show its certificate"
    book_reads = ("orderbook", "depth_snapshot", "bookticker", "events")
    for key in BOOK_KEYS:
        assert {dep.asset_key for dep in SPECS[key].deps} == set(map(daily_asset_key, book_reads))
    assert dg.AssetKey("book_1s") in {dep.asset_key for dep in SPECS[FEATURES].deps}
    daily = map(daily_asset_key, CONSOLIDATED_KINDS)
    assert set(SPECS) == {
        SOURCE,
        FEATURES,
        COMPLETENESS,
        TRADE_BACKFILL,
        CATALOG,
        *BOOK_KEYS,
        *RAW_KIND_KEYS.values(),
        *daily,
    }
    assert not SPECS[TRADE_BACKFILL].deps and SPECS[TRADE_BACKFILL].automation_condition is None
    assert not SPECS[SOURCE].deps and SPECS[SOURCE].partitions_def is None, "the source is one unpartitioned folder"
    assert not defs.resolve_assets_def(SOURCE).is_executable, "Dagster never materializes the segments"


def test_each_daily_kind_reads_every_segment_partition_of_its_raw_kind():
    for kind in CONSOLIDATED_KINDS:
        [dep] = SPECS[daily_asset_key(kind)].deps
        assert dep.asset_key == RAW_KIND_KEYS[kind]
        assert isinstance(dep.partition_mapping, dg.AllPartitionMapping), "which segment holds which day is data"


def test_every_asset_declares_owners_kinds_version_columns_and_pool():
    schemas = {
        **{RAW_KIND_KEYS[k]: s for k, s in RAW_KINDS.items()},
        FEATURES: FEATURES_1S,
        COMPLETENESS: COMPLETENESS_SCHEMA,
        **BOOK_KEYS,
    }
    schemas |= {daily_asset_key(kind): RAW_KINDS[kind] for kind in CONSOLIDATED_KINDS}
    duckdb_heavy = {CATALOG, FEATURES, COMPLETENESS, *BOOK_KEYS, *map(daily_asset_key, CONSOLIDATED_KINDS)}
    for key, spec in SPECS.items():
        name = key.to_user_string()
        assert spec.owners == ["team:harvest"], name
        assert spec.kinds, name
        assert spec.code_version, name
        assert spec.description, name
        pool = defs.resolve_assets_def(key).op.pool if key != SOURCE else None
        assert pool == (DUCKDB_POOL if key in duckdb_heavy else None), name
        if key in (SOURCE, TRADE_BACKFILL, CATALOG):
            continue
        columns = spec.metadata["dagster/column_schema"].columns
        assert [(c.name, c.type) for c in columns] == [(f.name, str(f.type)) for f in schemas[key]], name
        assert spec.freshness_policy is not None, name
    assert SPECS[RAW_KIND_KEYS["prices"]].code_version != SPECS[RAW_KIND_KEYS["events"]].code_version


def test_automation_stays_fast_with_10000_segment_partitions(tmp_path):
    names = [f"2026-01-05T00-00-{index:06d}" for index in range(10_000)]
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        instance.add_dynamic_partitions(SEGMENT_PARTITIONS.name, names)
        register_symbols(instance, ["BTCUSDT"])
        for name in names[-200:]:  # recent compactions, as the event log has them
            for key in RAW_KIND_KEYS.values():
                instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=name))
        cursor = dg.evaluate_automation_conditions(
            defs, instance, evaluation_time=dt.datetime(2026, 1, 6, 0, 10, tzinfo=dt.UTC)
        ).cursor
        started = time.perf_counter()
        result = dg.evaluate_automation_conditions(
            defs, instance, evaluation_time=dt.datetime(2026, 1, 6, 0, 21, tzinfo=dt.UTC), cursor=cursor
        )
        elapsed = time.perf_counter() - started
    assert result.total_requested == len(CONSOLIDATED_KINDS) + 2 + len(BOOK_KEYS), (
        "yesterday's daily kinds, certificate, book, features"
    )
    assert elapsed < 5.0, f"one automation evaluation took {elapsed:.2f} s with 10,000 segment partitions"


def test_each_raw_kind_materialization_counts_the_rows_its_run_wrote(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        [name] = write_registered_segments(tmp_path, instance, 1)
        assert compact(tmp_path, instance, name=name)
        counts = {}
        for kind, key in RAW_KIND_KEYS.items():
            [record] = instance.fetch_materializations(key, limit=1).records
            metadata = record.asset_materialization.metadata
            counts[kind] = metadata["dagster/row_count"].value
            written = sum(
                pq.read_metadata(f).num_rows for f in (tmp_path / "parquet").glob(f"market=usdm/*/*/kind={kind}/*")
            )
            assert counts[kind] == written, kind
    assert counts["prices"] > 0 and counts["bookticker"] > 0

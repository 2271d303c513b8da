"""A store from before markets existed (``parquet/date=…``) moves into ``parquet/market=usdm/`` without losing or
doubling a file, whoever touches it first, and Dagster reads it there."""

from __future__ import annotations

import dagster as dg
import pyarrow.parquet as pq

from assets.consolidation import daily_consolidation
from assets.features import features_1s
from assets.resources import HarvestStorage
from harvest_pipeline.features.table import features_path
from harvest_pipeline.store.consolidation import consolidate
from harvest_pipeline.store.migration import has_legacy_layout, move_legacy_layout
from harvest_pipeline.symbol_partitions import register_symbols
from tests.features.rawdata import DAY, SYMBOL, T0, write_trades


def files_under(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def legacy_store(parquet) -> None:
    write_trades(parquet, [(T0 + 1_000, 1, "100", "1", False)], part="part-a")
    write_trades(parquet, [(T0 + 2_000, 2, "101", "2", True)], part="part-b")
    write_trades(parquet, [(T0 + 3_000, 9, "102", "1", False)], symbol="ETHUSDT")


def test_a_legacy_store_moves_whole_and_a_second_call_finds_nothing(tmp_path):
    parquet = tmp_path / "parquet"
    legacy_store(parquet)
    before = files_under(parquet)

    migration = move_legacy_layout(parquet)

    assert migration.moved == [f"market=usdm/date={DAY}"] and not migration.conflicts
    assert not has_legacy_layout(parquet)
    assert files_under(parquet / "market=usdm") == before
    assert move_legacy_layout(parquet).moved == []


def test_a_day_written_in_both_layouts_is_merged_file_by_file(tmp_path):
    parquet = tmp_path / "parquet"
    legacy_store(parquet)
    usdm = parquet / "market=usdm"
    write_trades(usdm, [(T0 + 2_000, 2, "101", "2", True)], part="part-b")  # the same segment compacted again
    write_trades(usdm, [(T0 + 4_000, 3, "103", "1", True)], part="part-c")  # a new one
    consolidate(parquet, DAY, "ETHUSDT", "prices")  # the legacy ETHUSDT day file moves in whole

    migration = move_legacy_layout(parquet)

    assert migration.duplicates_removed == [f"date={DAY}/symbol={SYMBOL}/kind=prices/part-b.parquet"]
    assert f"market=usdm/date={DAY}/symbol={SYMBOL}/kind=prices/part-a.parquet" in migration.moved
    assert f"market=usdm/date={DAY}/symbol=ETHUSDT" in migration.moved
    assert not (parquet / f"date={DAY}").exists()
    kind = usdm / f"date={DAY}" / f"symbol={SYMBOL}" / "kind=prices"
    assert sorted(p.name for p in kind.glob("*.parquet")) == ["part-a.parquet", "part-b.parquet", "part-c.parquet"]
    eth = consolidate(usdm, DAY, "ETHUSDT", "prices")
    assert eth.rows_out == 1


def test_two_day_files_for_one_kind_stay_apart_and_are_reported(tmp_path):
    parquet = tmp_path / "parquet"
    legacy_store(parquet)
    usdm = parquet / "market=usdm"
    write_trades(usdm, [(T0 + 4_000, 3, "103", "1", True)], part="part-c")
    consolidate(parquet, DAY, SYMBOL, "prices")
    consolidate(usdm, DAY, SYMBOL, "prices")

    migration = move_legacy_layout(parquet)

    assert migration.conflicts == [f"date={DAY}/symbol={SYMBOL}/kind=prices"]
    assert list((parquet / f"date={DAY}" / f"symbol={SYMBOL}" / "kind=prices").glob("day-*.parquet")), "kept"
    assert (usdm / f"date={DAY}" / "symbol=ETHUSDT" / "kind=prices").is_dir(), "everything else moved"


def test_dagster_moves_a_legacy_store_before_it_reads_it(tmp_path):
    legacy_store(tmp_path / "parquet")
    (tmp_path / "dagster_home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster_home"))
    register_symbols(instance, [SYMBOL])

    result = dg.materialize(
        [daily_consolidation, features_1s],
        partition_key=dg.MultiPartitionKey({"date": DAY.isoformat(), "symbol": SYMBOL}),
        instance=instance,
        resources={"storage": HarvestStorage(data_root=str(tmp_path))},
        selection=["prices_daily", "features_1s"],
    )

    assert result.success
    assert not has_legacy_layout(tmp_path / "parquet")
    features = pq.read_table(features_path(tmp_path / "parquet" / "market=usdm", DAY, SYMBOL))
    assert sum(features.column("trade_count").to_pylist()) == 2

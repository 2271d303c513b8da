"""The ``book`` multi-asset on a real Dagster instance: the three kinds with their metadata, the blocking check on a
crossed book, and the warnings on coverage and bookTicker agreement."""

from __future__ import annotations

import dagster as dg
import pyarrow.parquet as pq

from assets.book import book
from assets.resources import HarvestStorage
from harvest_pipeline.book import book_file
from harvest_pipeline.symbol_partitions import register_symbols
from tests.book.test_build import STEP, write_diffs, write_snapshot
from tests.completeness.rawfiles import chain
from tests.features.rawdata import DAY, SYMBOL

PARTITION = dg.MultiPartitionKey({"date": DAY.isoformat(), "symbol": SYMBOL})


def materialize_book(tmp_path) -> dg.ExecuteInProcessResult:
    (tmp_path / "home").mkdir(exist_ok=True)
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        register_symbols(instance, [SYMBOL])
        return dg.materialize(
            [book],
            partition_key=PARTITION,
            instance=instance,
            resources={"storage": HarvestStorage(data_root=str(tmp_path))},
            raise_on_error=False,
        )


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def test_a_sound_day_materializes_three_kinds_and_warns_that_it_covers_little_of_the_day(tmp_path):
    write_diffs(tmp_path / "parquet" / "market=usdm", chain(STEP, 30 * STEP, step=STEP))
    write_snapshot(tmp_path / "parquet" / "market=usdm", 500)

    result = materialize_book(tmp_path)

    assert result.success
    materialized = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    assert set(materialized) == {"book_validity", "book_1s", "book_checkpoint"}
    metadata = materialized["book_1s"].materialization.metadata
    assert metadata["dagster/row_count"].value == 86_400 and metadata["diffs_applied"].value == 30
    found = checks(result)
    assert found["no_crossed_book"].passed
    share = found["valid_share"]
    assert not share.passed and share.severity == dg.AssetCheckSeverity.WARN
    assert 0 < share.metadata["valid_share"].value < 0.01, "30 diffs 10 s apart cover 5 minutes of the day"
    assert found["bookticker_agreement"].passed and found["bookticker_agreement"].metadata["compared"].value == 0
    assert pq.read_table(book_file(tmp_path / "parquet" / "market=usdm", DAY, SYMBOL, "book_1s")).num_rows == 86_400


def test_a_crossed_book_fails_the_blocking_check(tmp_path):
    write_diffs(tmp_path / "parquet" / "market=usdm", chain(STEP, 3 * STEP, step=STEP))
    write_snapshot(tmp_path / "parquet" / "market=usdm", 500, bid="100.2", ask="100.1")

    result = materialize_book(tmp_path)

    crossed = checks(result)["no_crossed_book"]
    assert not crossed.passed and crossed.metadata["crossed_or_locked_diffs"].value == 3
    assert crossed.metadata["first"].value[0]["bid"] == 100.2

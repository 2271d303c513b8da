"""The ``completeness`` asset on a real Dagster instance: its blocking check stops the day's features in the same run
when a hole is unexplained, and lets them through when every hole is healed or declared."""

from __future__ import annotations

import json

import dagster as dg
import pyarrow.parquet as pq

from assets.completeness import completeness
from assets.features import features_1s
from assets.resources import HarvestStorage
from harvest_pipeline.completeness import certificate_path
from harvest_pipeline.features.table import features_path
from harvest_pipeline.symbol_partitions import register_symbols
from tests.completeness.rawfiles import TRADES, trade_ms, write_prices
from tests.features.rawdata import DAY, SYMBOL, write_events

PARTITION = dg.MultiPartitionKey({"date": DAY.isoformat(), "symbol": SYMBOL})


def run_day(tmp_path) -> tuple[dg.ExecuteInProcessResult, dg.AssetCheckEvaluation]:
    """Materialize the certificate and the features of the test day in one run, as the nightly automation does."""
    resources = {"storage": HarvestStorage(data_root=str(tmp_path))}
    (tmp_path / "home").mkdir(exist_ok=True)
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        register_symbols(instance, [SYMBOL])
        result = dg.materialize(
            [completeness, features_1s],
            partition_key=PARTITION,
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
    [check] = [e for e in result.get_asset_check_evaluations() if e.asset_key == completeness.key]
    return result, check


def test_rows_deleted_from_prices_fail_the_blocking_check_and_the_features_are_not_built(tmp_path):
    # ids 40..44 deleted: nothing explains them
    write_prices(tmp_path / "parquet" / "market=usdm", [*range(1, 40), *range(45, 60)])

    result, check = run_day(tmp_path)

    assert check.check_name == "no_unexplained_holes" and not check.passed
    assert check.metadata["unexplained_holes"].value == 1
    [hole] = check.metadata["first_unexplained"].value
    assert (hole["stream"], hole["first_id"], hole["last_id"], hole["ids"]) == (TRADES, 40, 44, 5)
    assert not result.success
    assert [e.asset_key for e in result.get_asset_materialization_events()] == [completeness.key]
    assert not features_path(tmp_path / "parquet" / "market=usdm", DAY, SYMBOL).exists(), "the blocked step never ran"
    [row] = pq.read_table(certificate_path(tmp_path / "parquet" / "market=usdm", DAY, SYMBOL)).to_pylist()
    assert not row["certified"] and row["unexplained_holes"] == 1


def test_a_declared_hole_passes_and_the_features_follow_in_the_same_run(tmp_path):
    write_prices(tmp_path / "parquet" / "market=usdm", [*range(1, 40), *range(45, 60)])
    declared = {
        "event": "backfill",
        "event_time_ms": trade_ms(50),
        "stream": TRADES,
        "reason": "the exchange serves no trade with ids 40..44",
        "from_id": 40,
        "to_id": 44,
        "detail": json.dumps({"k": "backfill", "outcome": "declared"}),
    }
    write_events(tmp_path / "parquet" / "market=usdm", [declared])

    result, check = run_day(tmp_path)

    assert check.passed and check.metadata["declared_holes"].value == 1
    assert result.success
    assert {e.asset_key for e in result.get_asset_materialization_events()} == {completeness.key, features_1s.key}
    assert pq.read_table(features_path(tmp_path / "parquet" / "market=usdm", DAY, SYMBOL)).num_rows == 86_400

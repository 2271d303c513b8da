"""Consolidation and features_1s materialized on a real Dagster instance, checked against the plain reference."""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from assets.consolidation import daily_consolidation
from assets.features import features_1s
from assets.resources import HarvestStorage
from harvest_pipeline.features.sources import day_start_ms
from harvest_pipeline.features.table import features_path
from harvest_pipeline.store import kind_dir
from harvest_pipeline.symbol_partitions import register_symbols
from tests.features.rawdata import DAY, SYMBOL, T0, write_events
from tests.features.reference import reference_features
from tests.features.synthetic import write_synthetic_day

PARTITION = dg.MultiPartitionKey({"date": DAY.isoformat(), "symbol": SYMBOL})
LABELS_AT_MEDIAN = ("vol_bucket", "scenario_2x2")


def materialize(selection: list, instance: dg.DagsterInstance, data_root) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        selection,
        partition_key=PARTITION,
        instance=instance,
        resources={"storage": HarvestStorage(data_root=str(data_root))},
    )


def assert_matches_reference(table, reference: list[dict]) -> None:
    """Every column of every second equals the reference (floats to 1e-9 relative)."""
    actual = table.to_pydict()
    rv_median = sorted(r["realized_vol_trailing"] for r in reference if r["realized_vol_trailing"] is not None)
    median = (rv_median[(len(rv_median) - 1) // 2] + rv_median[len(rv_median) // 2]) / 2
    for name, values in actual.items():
        expected = [row[name] for row in reference]
        for second, (got, want) in enumerate(zip(values, expected, strict=True)):
            rv = reference[second]["realized_vol_trailing"]
            if name in LABELS_AT_MEDIAN and rv is not None and abs(rv - median) < 1e-12:
                continue  # a tie with the day's median may fall either side of summation-order rounding
            if isinstance(want, float):
                assert got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), (
                    name,
                    second,
                    got,
                    want,
                )
            else:
                assert got == want, (name, second, got, want)


def test_materialized_features_match_the_reference_and_rerun_identically(tmp_path):
    parquet = tmp_path / "parquet" / "market=usdm"
    write_synthetic_day(parquet, DAY, SYMBOL, trades=45_000, ticks=25_000, start_s=25_200, burst_share=0.5)
    gap = {
        "event": "gap",
        "event_time_ms": T0 + 40_000_000,
        "from_time_ms": T0 + 39_990_500,
        "to_time_ms": T0 + 40_000_000,
    }
    write_events(parquet, [gap])
    (tmp_path / "dagster_home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster_home"))
    register_symbols(instance, [SYMBOL])
    reference = reference_features(
        kind_dir(parquet, DAY, SYMBOL, "prices").parent, [kind_dir(parquet, DAY, SYMBOL, "events")], day_start_ms(DAY)
    )

    from_parts = materialize([features_1s], instance, tmp_path)
    assert from_parts.success
    parts_table = pq.read_table(features_path(parquet, DAY, SYMBOL))
    assert parts_table.num_rows == 86_400
    assert_matches_reference(parts_table, reference)
    assert sum(parts_table.column("gap").to_pylist()) == 11

    final = materialize([daily_consolidation, features_1s], instance, tmp_path)
    assert final.success
    assert len(list(kind_dir(parquet, DAY, SYMBOL, "prices").glob("*.parquet"))) == 1
    assert pq.read_table(features_path(parquet, DAY, SYMBOL)).equals(parts_table)

    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in final.get_asset_check_evaluations()}
    assert checks[("features_1s", "row_count_is_86400")].passed
    assert checks[("features_1s", "empty_minute_rate")].passed
    assert checks[("features_1s", "latency_percentiles")].passed
    assert checks[("prices_daily", "no_duplicates_after_dedup")].passed
    assert checks[("prices_daily", "duplicates_removed_below_limit")].passed
    gaps = checks[("features_1s", "feed_gaps")]
    assert not gaps.passed and gaps.severity == dg.AssetCheckSeverity.WARN
    assert gaps.metadata["gaps"].value[0]["from_ms"] == gap["from_time_ms"]

    prices = [m for m in final.get_asset_materialization_events() if m.asset_key == dg.AssetKey("prices_daily")]
    metadata = prices[0].materialization.metadata
    assert metadata["duplicates_removed"].value == 3 * 2  # 4 parts, each overlapping the previous by 2 rows
    assert metadata["rows_out"].value == metadata["dagster/row_count"].value == 45_000
    chart = [m for m in final.get_asset_materialization_events() if m.asset_key == dg.AssetKey("features_1s")]
    chart_file = Path(chart[0].materialization.metadata["chart_path"].value)
    assert chart_file.read_bytes().startswith(b"\x89PNG") and "chart" not in chart[0].materialization.metadata
    assert len(repr(chart[0].materialization.metadata)) < 4_000, "metadata stays small: the chart lives on disk"
    recorded = parts_table.column("recorded").to_pylist()
    assert chart[0].materialization.metadata["recorded_seconds"].value == sum(recorded)
    assert chart[0].materialization.metadata["dagster/row_count"].value == 86_400
    assert not any(recorded[:25_200]) and all(recorded[25_300:86_000]), "recorded from the first raw row on"
    assert not math.isnan(parts_table.column("cvd").to_pylist()[-1])

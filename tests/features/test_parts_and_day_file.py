"""The features of a day are the same whether they are read from its 1,440 one-minute part files (during the day)
or from the consolidated day files (after it): bit for bit, z-scores, labels, gaps and latency included."""

from __future__ import annotations

import datetime as dt
import shutil

import pyarrow.parquet as pq

from harvest_pipeline.features.sources import DaySources
from harvest_pipeline.features.table import FeatureParams, build_features
from harvest_pipeline.schema import PRICES
from harvest_pipeline.store import kind_dir
from harvest_pipeline.store.consolidation import consolidate
from tests.features.rawdata import DAY, SYMBOL, T0, write_events
from tests.features.synthetic import write_synthetic_book, write_synthetic_day

PARTS = 1_440


def old_part(root):
    return kind_dir(root, DAY, SYMBOL, "prices") / "part-seg700.parquet"


def write_busy_day_in_parts(root) -> None:
    """A day of one-minute parts overlapping each other, one written before ``source`` existed, its book and a
    ledger with a connection open at midnight, a disconnect and a feed gap."""
    write_synthetic_day(root, DAY, SYMBOL, trades=20_000, ticks=15_000, parts=PARTS)
    write_synthetic_book(root, DAY, SYMBOL, invalid_seconds=(3_600, 3_700))
    pq.write_table(pq.read_table(old_part(root)).drop_columns(["source"]), old_part(root))
    write_events(root, [{"event": "connect", "event_time_ms": T0 - 60_000}], day=DAY - dt.timedelta(days=1))
    write_events(
        root,
        [
            {"event": "disconnect", "event_time_ms": T0 + 7_200_000, "reason": "network"},
            {"event": "connect", "event_time_ms": T0 + 7_230_000},
            {"event": "gap", "event_time_ms": T0 + 40_000_000, "from_time_ms": T0 + 39_990_500, "count": 3},
        ],
    )


def test_features_from_1440_parts_equal_those_from_the_consolidated_day_files(tmp_path):
    parts, consolidated = tmp_path / "parts", tmp_path / "day"
    write_busy_day_in_parts(parts)
    shutil.copytree(parts, consolidated)
    for kind in ("prices", "bookticker"):
        assert consolidate(consolidated, DAY, SYMBOL, kind).duplicates_removed == 2 * (PARTS - 1)
    from_parts = build_features(parts, DAY, SYMBOL, FeatureParams())
    from_day = build_features(consolidated, DAY, SYMBOL, FeatureParams())

    sources = DaySources.discover(parts, DAY, SYMBOL)
    assert (len(sources.prices), len(sources.bookticker)) == (PARTS, PARTS)
    assert len(DaySources.discover(consolidated, DAY, SYMBOL).prices) == 1
    assert pq.read_schema(old_part(parts)).names == [n for n in PRICES.names if n != "source"]
    assert from_parts.table.num_rows == 86_400
    assert sum(from_parts.table.column("trade_count").to_pylist()) == 20_000
    assert from_parts.table.equals(from_day.table)
    assert from_parts.gaps == from_day.gaps and len(from_parts.gaps) == 2
    assert from_parts.latency_ms == from_day.latency_ms and from_parts.latency_ms["rows"] == 35_000

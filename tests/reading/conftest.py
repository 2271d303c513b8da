"""A store the real pipeline wrote, shared by the reading tests (built once per module): the simulator and the
collector record across UTC midnight (one trade-id hole and one dropped connection injected), compaction writes
parts, the first day is consolidated and the second is not, features, certificates and books are built."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import pytest

from harvest_pipeline.book import build_book, write_book
from harvest_pipeline.compaction import compact_segment
from harvest_pipeline.completeness import build_certificate, write_certificate
from harvest_pipeline.features.table import FeatureParams, build_features, write_features
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import list_sealed_segments
from harvest_pipeline.store.consolidation import consolidate
from harvest_pipeline.store.identity import DEDUP_KEYS
from tests.collector.harness import collect_in_process

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def offset_to_midnight(seconds_before: float) -> tuple[int, int]:
    now_ms = time.time_ns() // 1_000_000
    next_midnight = (now_ms // 86_400_000 + 1) * 86_400_000
    return next_midnight - now_ms - round(seconds_before * 1000), next_midnight


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, int, dict]:
    """The data root, the midnight recorded across and the simulator's accounting."""
    return build_store(tmp_path_factory.mktemp("store"))


def build_store(root: Path) -> tuple[Path, int, dict]:
    """Record, compact, consolidate the first day and build the derived tables under ``root / "data"``; returns the
    data root, the midnight recorded across and the simulator's accounting."""
    offset, midnight = offset_to_midnight(3.0)

    async def scenario(sim, service):
        await asyncio.sleep(1.5)
        await sim.apply_fault({"fault": "skip_agg_ids", "symbol": "BTCUSDT", "count": 3})
        await asyncio.sleep(3.0)
        [connection] = [c for c in sim.connection_list() if "ethusdt@aggTrade" in c["streams"]][:1]
        await sim.apply_fault({"fault": "drop_connection", "connection": connection["id"]})
        await asyncio.sleep(2.5)

    _, accounting = collect_in_process(
        root,
        scenario,
        symbols=SYMBOLS,
        clock=lambda: time.time_ns() + offset * 1_000_000,
        simulator_settings={"clock_offset_ms": offset},
        segment_max_age_s=1.0,
        backfill=False,
        backoff_initial_s=0.3,
    )
    paths = DataPaths.from_root(root / "data")
    for sealed in list_sealed_segments(paths.sealed_segments):
        compact_segment(sealed, paths)
    parquet = paths.market_parquet()
    days = sorted(dt.date.fromisoformat(p.name.removeprefix("date=")) for p in parquet.glob("date=*"))
    assert len(days) == 2, days
    for symbol in SYMBOLS:
        for kind in DEDUP_KEYS:
            consolidate(parquet, days[0], symbol, kind)  # the first day consolidated, the second still in parts
        for day in days:
            write_certificate(build_certificate(parquet, day, symbol), parquet, day, symbol)
            write_book(build_book(parquet, day, symbol), parquet)
            write_features(build_features(parquet, day, symbol, FeatureParams()), parquet)
    return root / "data", midnight, accounting

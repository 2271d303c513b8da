"""A day of real Parquet recorded from the simulator, with holes made in it, for the healing tests.

The simulator starts frozen (it issues no trade), a collector records only ``aggTrade`` (no depth snapshots, so the
REST weight the simulator counts is the healing's alone, and no live backfill), the market runs, freezes again, the
collector stops and every sealed segment is compacted. Every id the simulator issued is then in ``prices`` (the
accounting says which), and a test removes the rows it wants healed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.service import CollectorService
from harvest_pipeline.compaction.segment import CompactionReport, compact_segment, reconcile
from harvest_pipeline.completeness import build_certificate
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import find_sealed_segment, list_sealed_segments
from harvest_pipeline.simulator import Simulator
from harvest_pipeline.store import kind_dir, read_parquet_sql, visible_files, write_parquet_atomically
from tests.collector.harness import FAST_SETTINGS

SYMBOL = "BTCUSDT"
STREAM = "btcusdt@aggTrade"
FREEZE = {"fault": "burst", "seconds": 3600, "multiplier": 0}
"""A market that issues no trade (the clock and REST go on)."""
SCENARIO_TIMEOUT_S = 300.0
"""Long enough for a run that waits out a minute of request weight."""


def run(scenario: Coroutine[Any, Any, Any]) -> Any:
    """Run one async test scenario with a hard timeout."""
    return asyncio.run(asyncio.wait_for(scenario, SCENARIO_TIMEOUT_S))


async def record_day(
    sim: Simulator,
    paths: DataPaths,
    seconds: float,
    during: Callable[[Simulator], Awaitable[None]] | None = None,
    **collector: Any,
) -> dt.date:
    """Record ``seconds`` of trading (running ``during`` meanwhile) into sealed segments and compact them all; returns
    the UTC day recorded. ``sim`` must have been started frozen (``SimulatorConfig(faults=(FREEZE,))``)."""
    config = CollectorConfig(
        symbols=(SYMBOL,),
        ws_base=sim.ws_base,
        rest_base=sim.rest_base,
        stream_kinds=("aggTrade",),
        **{**FAST_SETTINGS, "watchdog_s": 30.0, "backfill": False, **collector},
    )
    service = CollectorService(config, paths)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    deadline = time.monotonic() + 10
    while not any(STREAM in conn["streams"] for conn in sim.connection_list()):
        assert time.monotonic() < deadline, "the collector did not subscribe within 10 s"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    await sim.apply_fault({"fault": "clear"})
    await asyncio.gather(asyncio.sleep(seconds), during(sim) if during else asyncio.sleep(0))
    await sim.apply_fault(FREEZE)
    await asyncio.sleep(0.3)
    stop.set()
    assert await task == 0
    for segment in list_sealed_segments(paths.sealed_segments):
        assert reconcile(compact_segment(segment, paths)).passed
    return dt.datetime.now(dt.UTC).date()


def compact(paths: DataPaths, name: str) -> CompactionReport:
    """Compact the sealed segment ``name``; asserts every line is accounted for."""
    report = compact_segment(find_sealed_segment(paths.sealed_segments, name), paths)
    assert reconcile(report).passed, reconcile(report).detail
    return report


def issued_ids(accounting: dict[str, Any]) -> list[int]:
    """Every aggregate trade id the simulator issued for ``SYMBOL``, skipped ones left out."""
    trades = accounting["trades"][SYMBOL]
    skipped = {i for first, last in trades["skipped"] for i in range(first, last + 1)}
    return [i for i in range(trades["first_id"], trades["last_id"] + 1) if i not in skipped]


def prices_sources(paths: DataPaths, day: dt.date) -> tuple[Counter[int], dict[int, str]]:
    """How often each trade id appears in the day's visible ``prices`` files, and the source of each."""
    files = visible_files(kind_dir(paths.market_parquet(), day, SYMBOL, "prices"))
    table = pq.read_table(files, columns=["agg_trade_id", "source"]) if files else None
    if table is None:
        return Counter(), {}
    ids, sources = table.column("agg_trade_id").to_pylist(), table.column("source").to_pylist()
    return Counter(ids), dict(zip(ids, sources, strict=True))


def drop_trades(paths: DataPaths, day: dt.date, ids: set[int]) -> int:
    """Remove the rows of ``ids`` from the day's compacted ``prices`` parts (as if they were never recorded); returns
    how many rows went."""
    dropped = 0
    for part in visible_files(kind_dir(paths.market_parquet(), day, SYMBOL, "prices")):
        table = pq.read_table(part)
        keep = pc.invert(pc.is_in(table.column("agg_trade_id"), pa.array(sorted(ids), pa.int64())))
        kept = table.filter(keep)
        if kept.num_rows != table.num_rows:
            dropped += table.num_rows - kept.num_rows
            write_parquet_atomically(kept, part)
    return dropped


def trade_certificate(paths: DataPaths, day: dt.date) -> dict[str, Any]:
    """The aggTrade row of the day's completeness certificate, built from the visible Parquet."""
    [row] = [r for r in build_certificate(paths.market_parquet(), day, SYMBOL).to_pylist() if r["stream"] == STREAM]
    return row


def events_of(paths: DataPaths, day: dt.date, event: str) -> list[dict[str, Any]]:
    """The ``events`` rows of one kind on ``day`` (symbol folder ``SYMBOL``)."""
    files = visible_files(kind_dir(paths.market_parquet(), day, SYMBOL, "events"))
    if not files:
        return []
    return [
        dict(zip(("event", "reason", "from_id", "to_id", "detail"), row, strict=True))
        for row in duckdb.sql(
            f"SELECT event, reason, from_id, to_id, detail FROM {read_parquet_sql(files)} WHERE event = '{event}'"
        ).fetchall()
    ]

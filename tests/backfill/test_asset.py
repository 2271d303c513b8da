"""``trade_backfill`` materialized for one day x symbol partition on a real Dagster instance, against the simulator."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import dagster as dg

from assets.resources import HarvestStorage
from assets.trade_backfill import TradeBackfillConfig, trade_backfill
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import list_sealed_segments
from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from harvest_pipeline.symbol_partitions import register_symbols
from tests.backfill.recording import (
    FREEZE,
    SYMBOL,
    compact,
    drop_trades,
    issued_ids,
    prices_sources,
    record_day,
    run,
)


def test_the_asset_heals_its_partition_and_reports_what_it_fetched(tmp_path: Path) -> None:
    paths = DataPaths.from_root(tmp_path / "data")

    async def scenario() -> None:
        async with running_simulator(SimulatorConfig(symbols=(SYMBOL,), seed=7, rate=1.0, faults=(FREEZE,))) as sim:
            day = await record_day(sim, paths, seconds=2.0)
            hole = issued_ids(sim.accounting())[5:25]
            drop_trades(paths, day, set(hole))
            settings = tmp_path / "settings.json"
            settings.write_text(json.dumps({"data_root": str(paths.root), "rest_base": sim.rest_base}))
            instance = dg.DagsterInstance.ephemeral()
            register_symbols(instance, [SYMBOL])
            result = await asyncio.to_thread(
                dg.materialize,
                [trade_backfill],
                partition_key=dg.MultiPartitionKey({"date": day.isoformat(), "symbol": SYMBOL}),
                instance=instance,
                resources={"storage": HarvestStorage(settings_file=str(settings))},
                run_config=dg.RunConfig({"trade_backfill": TradeBackfillConfig(weight_per_minute=100)}),
            )
            assert result.success
            [materialization] = result.asset_materializations_for_node("trade_backfill")
            metadata = {key: value.value for key, value in materialization.metadata.items()}
            [segment] = [s.name for s in list_sealed_segments(paths.sealed_segments) if "-backfill-" in s.name]
            assert metadata["trades_stored"] == 20 and metadata["ids_declared"] == 0
            assert (metadata["requests"], metadata["weight_used"], metadata["holes_considered"]) == (1, 20, 1)
            assert metadata["segment"] == segment
            assert sim.accounting()["rest"]["weight_used"] == 20
            compact(paths, segment)
            counts, sources = prices_sources(paths, day)
            assert set(counts.values()) == {1} and {sources[i] for i in hole} == {"rest"}

    run(scenario())

"""The collector's live backfill, which shares its page logic with the healing of past days, still fills the hole a
stalled stream leaves, with its provenance."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from harvest_pipeline.paths import DataPaths
from harvest_pipeline.simulator import Simulator, SimulatorConfig, running_simulator
from tests.backfill.recording import (
    FREEZE,
    STREAM,
    SYMBOL,
    events_of,
    issued_ids,
    prices_sources,
    record_day,
    run,
    trade_certificate,
)


def test_a_stalled_stream_hole_is_filled_live_from_rest_with_one_record_per_request(tmp_path: Path) -> None:
    paths = DataPaths.from_root(tmp_path / "data")

    async def stall(sim: Simulator) -> None:
        await asyncio.sleep(0.5)
        await sim.apply_fault({"fault": "stall_stream", "stream": STREAM, "seconds": 0.5})

    async def scenario() -> None:
        async with running_simulator(SimulatorConfig(symbols=(SYMBOL,), seed=8, rate=3.0, faults=(FREEZE,))) as sim:
            day = await record_day(sim, paths, seconds=3.0, during=stall, backfill=True)
            ids = issued_ids(sim.accounting())
            rest = sim.accounting()["rest"]
        counts, sources = prices_sources(paths, day)
        assert sorted(counts) == ids and set(counts.values()) == {1}
        healed = sorted(i for i, source in sources.items() if source == "rest")
        assert len(healed) > 20 and healed == list(range(healed[0], healed[-1] + 1)), "one contiguous hole"
        certificate = trade_certificate(paths, day)
        assert (certificate["healed_holes"], certificate["unexplained_holes"], certificate["declared_holes"]) == (
            1,
            0,
            0,
        )
        requests = [json.loads(e["detail"]) for e in events_of(paths, day, "backfill")]
        assert [(r["outcome"], r["status"], r["weight"], r["count"]) for r in requests] == [
            ("fetched", 200, 20, len(healed))
        ]
        assert (requests[0]["from_id"], requests[0]["to_id"]) == (healed[0], healed[-1])
        assert rest["requests"] == 1

    run(scenario())

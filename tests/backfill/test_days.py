"""heal_days against the simulator on real files: holes filled exactly once, within the weight budget, declared when the
exchange cannot give them, and nothing written when there is nothing left to fill."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

from harvest_pipeline.backfill.days import HealProgress, RetryPolicy, heal_days
from harvest_pipeline.backfill.holes import NOT_SERVED, not_served_reason
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import list_sealed_segments
from harvest_pipeline.simulator import Simulator, SimulatorConfig, running_simulator
from tests.backfill.recording import (
    FREEZE,
    SYMBOL,
    compact,
    drop_trades,
    events_of,
    issued_ids,
    prices_sources,
    record_day,
    run,
    trade_certificate,
)


def test_holes_are_filled_exactly_once_within_the_weight_budget_and_a_second_run_finds_nothing(tmp_path: Path) -> None:
    paths = DataPaths.from_root(tmp_path / "data")
    weight_per_minute = 40  # two pages a minute: the third page must wait for the window
    progress: list[HealProgress] = []

    def follow(step: HealProgress) -> None:
        assert step.requests <= 4, "one page settles every small hole it reaches"
        progress.append(step)

    async def scenario() -> None:
        async with running_simulator(SimulatorConfig(symbols=(SYMBOL,), seed=3, rate=15.0, faults=(FREEZE,))) as sim:

            async def skip_five_ids(sim: Simulator) -> None:
                await asyncio.sleep(0.3)
                await sim.apply_fault({"fault": "skip_agg_ids", "symbol": SYMBOL, "count": 5})

            day = await record_day(sim, paths, seconds=6.0, during=skip_five_ids)
            ids = issued_ids(sim.accounting())
            [[_, skipped_last]] = sim.accounting()["trades"][SYMBOL]["skipped"]
            start = ids.index(skipped_last + 101)
            assert len(ids) > start + 3_000, "enough trades after the skip for three pages"
            big_hole = set(ids[start : start + 2_100])
            small_holes = set(ids[start + 2_200 : start + 2_400 : 3])  # 67 one-id holes the third page reaches
            assert drop_trades(paths, day, big_hole | small_holes) == len(big_hole | small_holes)
            before = trade_certificate(paths, day)
            assert before["unexplained_holes"] == 1 + len(small_holes)
            assert before["declared_holes"] == 1, "the skip is declared by the collector's gap record"

            started = time.monotonic()
            report = await asyncio.to_thread(
                heal_days, paths, SYMBOL, day, day, sim.rest_base, weight_per_minute, follow
            )
            elapsed = time.monotonic() - started
            rest = sim.accounting()["rest"]
            assert report.holes_considered == 2 + len(small_holes), "the gap-declared skip is retried too"
            assert report.trades_stored == len(big_hole | small_holes)
            assert report.requests >= 3
            assert report.weight_used == 20 * report.requests == rest["weight_used"]
            assert rest["max_weight_per_minute"] <= weight_per_minute
            assert rest["rejected"]["429"] == 0
            assert elapsed > 50 and any(p.waiting_s > 0 for p in progress), "the budget made the third page wait"
            assert [d.reason for d in report.declared] == [
                not_served_reason(first, last) for first, last in sim.accounting()["trades"][SYMBOL]["skipped"]
            ]
            assert progress[-1].ids_done == progress[-1].ids == len(big_hole | small_holes) + 5
            assert progress[-1].holes_done == progress[-1].holes == report.holes_considered

            compacted = compact(paths, report.segment)
            assert compacted.rows_written("prices") == report.trades_stored
            assert compacted.unexplained_gaps() == [], "the backfill records explain the jumps between its holes"
            counts, sources = prices_sources(paths, day)
            assert sorted(counts) == ids and set(counts.values()) == {1}, "every issued id exactly once"
            assert {i for i, source in sources.items() if source == "rest"} == big_hole | small_holes
            after = trade_certificate(paths, day)
            assert after["unexplained_holes"] == 0 and after["certified"]
            assert after["healed_holes"] == 1 + len(small_holes)
            [declared] = [hole for hole in after["holes"] if hole["cause"] == "declared"]
            assert declared["reason"].startswith(NOT_SERVED) and declared["ids"] == 5

            segments_before = list_sealed_segments(paths.sealed_segments)
            again = await asyncio.to_thread(heal_days, paths, SYMBOL, day, day, sim.rest_base, weight_per_minute)
            assert (again.holes_considered, again.requests, again.segment) == (0, 0, None)
            assert list_sealed_segments(paths.sealed_segments) == segments_before
            assert sim.accounting()["rest"]["requests"] == rest["requests"]

    run(scenario())


def test_ids_past_the_exchange_history_are_declared_on_their_own_day_even_when_healed_days_later(
    tmp_path: Path,
) -> None:
    paths = DataPaths.from_root(tmp_path / "data")
    three_days_later = 3 * 86_400 * 10**9

    def later() -> int:
        return time.time_ns() + three_days_later

    async def scenario() -> None:
        config = SimulatorConfig(symbols=(SYMBOL,), seed=4, rate=3.0, agg_trade_history=300, faults=(FREEZE,))
        async with running_simulator(config) as sim:
            day = await record_day(sim, paths, seconds=3.0)
            ids = issued_ids(sim.accounting())
            assert len(ids) > 400
            hole = ids[50:100]
            assert drop_trades(paths, day, set(hole)) == 50
            assert sim.accounting()["trades"][SYMBOL]["forgotten_below"] > hole[-1]

            report = await asyncio.to_thread(heal_days, paths, SYMBOL, day, day, sim.rest_base, clock=later)
            reason = not_served_reason(hole[0], hole[-1])
            assert [(d.day, d.first_id, d.last_id, d.reason) for d in report.declared] == [
                (day, hole[0], hole[-1], reason)
            ]
            assert (report.requests, report.trades_stored, report.ids_declared) == (1, 0, 50)
            fetched_day = dt.datetime.fromtimestamp(later() / 1e9, dt.UTC).date()
            assert report.segment is not None and report.segment.startswith(fetched_day.strftime("%Y%m%d"))
            compact(paths, report.segment)
            [declaration] = [e for e in events_of(paths, day, "backfill") if e["reason"] == reason]
            assert (declaration["from_id"], declaration["to_id"]) == (hole[0], hole[-1])
            assert events_of(paths, fetched_day, "backfill"), "the request itself is filed at its own (later) time"
            certificate = trade_certificate(paths, day)
            assert certificate["unexplained_holes"] == 0
            assert [(h["cause"], h["reason"]) for h in certificate["holes"]] == [("declared", reason)]

            again = await asyncio.to_thread(heal_days, paths, SYMBOL, day, day, sim.rest_base)
            assert (again.holes_considered, again.requests, again.segment) == (0, 0, None)
            retried = await asyncio.to_thread(heal_days, paths, SYMBOL, day, day, sim.rest_base, retry_declared=True)
            assert (retried.holes_considered, retried.requests, retried.ids_declared) == (1, 1, 50)
            assert retried.segment is not None

    run(scenario())


def test_failing_requests_are_declared_after_five_attempts_then_a_retry_waits_out_a_429(tmp_path: Path) -> None:
    paths = DataPaths.from_root(tmp_path / "data")
    quick = RetryPolicy(initial_s=0.01, max_s=0.05)

    async def scenario() -> None:
        async with running_simulator(SimulatorConfig(symbols=(SYMBOL,), seed=5, rate=1.0, faults=(FREEZE,))) as sim:
            day = await record_day(sim, paths, seconds=2.0)
            hole = issued_ids(sim.accounting())[20:30]
            drop_trades(paths, day, set(hole))

            await sim.apply_fault({"fault": "rest_status", "status": 503, "count": 5})
            failed = await asyncio.to_thread(heal_days, paths, SYMBOL, day, day, sim.rest_base, retry=quick)
            assert failed.requests == 5 and failed.trades_stored == 0
            [declared] = failed.declared
            assert declared.reason.startswith("REST backfill gave up after 5 attempts: HTTP 503")
            assert (declared.first_id, declared.last_id) == (hole[0], hole[-1])
            compact(paths, failed.segment)
            [listed] = trade_certificate(paths, day)["holes"]
            assert (listed["cause"], listed["reason"]) == ("declared", declared.reason)
            nothing = await asyncio.to_thread(heal_days, paths, SYMBOL, day, day, sim.rest_base)
            assert nothing.holes_considered == 0, "a hole a backfill gave up on waits for --retry-declared"

            await sim.apply_fault({"fault": "rest_status", "status": 429, "count": 1, "retry_after": 2})
            started = time.monotonic()
            healed = await asyncio.to_thread(
                heal_days, paths, SYMBOL, day, day, sim.rest_base, retry_declared=True, retry=quick
            )
            assert time.monotonic() - started >= 2.0, "Retry-After was honoured"
            assert (healed.requests, healed.trades_stored, healed.declared) == (2, 10, [])
            assert sim.accounting()["rest"]["rejected"]["429"] == 1
            compact(paths, healed.segment)
            [listed] = trade_certificate(paths, day)["holes"]
            assert listed["cause"] == "healed"
            counts, sources = prices_sources(paths, day)
            assert set(counts.values()) == {1} and {sources[i] for i in hole} == {"rest"}

    run(scenario())

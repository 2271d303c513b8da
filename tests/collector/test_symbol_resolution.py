"""When the exchange cannot say which symbols ``top:N`` / ``all`` stand for, the collector neither exits nor guesses:
it records its explicit symbols (if any), /healthz says why the rest is missing, and it retries with backoff until
the selectors resolve; the symbols a restart could not resolve at once still get their down time declared."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.service import CollectorService
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from tests.collector.harness import FAST_SETTINGS, records_of
from tests.collector.sealed import load_sealed_records
from tests.collector.test_symbol_listing import eventually

LISTED = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
SETTINGS = {**FAST_SETTINGS, "stream_kinds": ("aggTrade", "bookTicker"), "watchdog_s": 3.0, "symbols_refresh_s": 60.0}
FAILING_REST = {"fault": "rest_status", "status": 503, "count": 2}


def run_collectors(tmp_path: Path, runs: list[tuple[tuple[str, ...], bool]]) -> tuple[list[dict[str, Any]], list]:
    """One simulator; for each run a collector with (symbols, whether REST fails twice first), stopped once its
    selectors resolved and it recorded a second. Returns the sealed records and each run's observations."""
    observed: list[dict[str, Any]] = []

    async def main() -> None:
        async with running_simulator(SimulatorConfig(symbols=LISTED, seed=4, rate=2.0)) as sim:
            for symbols, failing in runs:
                if failing:
                    await sim.apply_fault(FAILING_REST)
                config = CollectorConfig(symbols=symbols, ws_base=sim.ws_base, rest_base=sim.rest_base, **SETTINGS)
                service = CollectorService(config, DataPaths.from_root(tmp_path / "data"))
                stop = asyncio.Event()
                collector = asyncio.create_task(service.run(stop))
                await eventually(lambda s=service: s.metrics_port is not None, "the collector serving /healthz")
                seen = {"at start": service.symbols, "health at start": service.health()}
                assert service.refresher is not None
                await eventually(lambda s=service: s.refresher.resolved is not None, "the selectors resolved")
                await asyncio.sleep(1.0)
                seen |= {"resolved": service.symbols, "health resolved": service.health()}
                observed.append(seen)
                stop.set()
                assert await collector == 0

    asyncio.run(main())
    return load_sealed_records(tmp_path / "data" / "segments" / "sealed"), observed


def test_selectors_only_wait_unhealthy_without_exiting_then_record_what_they_resolve_to(tmp_path: Path) -> None:
    records, [seen] = run_collectors(tmp_path, [(("top:2",), True)])

    assert seen["at start"] == ()
    healthy, report = seen["health at start"]
    assert not healthy and report["symbols"]["resolved"] is None and report["symbols"]["failures_in_a_row"] >= 1
    [problem] = [p for p in report["problems"] if p.startswith("symbol selection")]
    assert (
        "top:2 not resolved" in problem and "HTTP 503" in problem and "recording nothing until it succeeds" in problem
    )

    assert len(seen["resolved"]) == 2 and set(seen["resolved"]) <= set(LISTED)
    healthy, report = seen["health resolved"]
    assert not [p for p in report["problems"] if p.startswith("symbol selection")]
    assert report["symbols"]["recorded"] == list(seen["resolved"])
    recorded = {r["s"].partition("@")[0].upper() for r in records_of(records, "frame")}
    assert recorded == set(seen["resolved"])


def test_explicit_symbols_are_recorded_at_once_while_the_selectors_retry(tmp_path: Path) -> None:
    records, [seen] = run_collectors(tmp_path, [(("SOLUSDT", "top:1"), True)])

    assert seen["at start"] == ("SOLUSDT",)
    problems = seen["health at start"][1]["problems"]
    assert any("recording only the explicit symbols SOLUSDT" in problem for problem in problems)
    assert seen["resolved"][0] == "SOLUSDT" and len(seen["resolved"]) == 2
    first_connect = records_of(records, "connect")[0]
    assert {s.partition("@")[0] for s in first_connect["streams"]} == {"solusdt"}


def test_a_restart_that_resolves_late_still_declares_the_down_time_of_the_symbols_it_recorded(tmp_path: Path) -> None:
    records, [first, second] = run_collectors(tmp_path, [(("all",), False), (("all",), True)])

    assert first["at start"] == LISTED, "resolved before the first connection"
    assert second["at start"] == () and second["resolved"] == LISTED
    down = [r for r in records_of(records, "gap") if r["reason"] == "collector down (restart)"]
    assert sorted(r["s"] for r in down) == sorted(
        f"{s.lower()}@{k}" for s in LISTED for k in ("aggTrade", "bookTicker")
    )
    assert all(r["c"].endswith("-symbols") for r in down), "declared when the selectors resolved"
    trades = [r for r in down if r["s"].endswith("@aggTrade")]
    assert all(r["last_id"] is not None for r in trades), "the id trackers resume after the last id stored"


def test_a_delisted_symbol_whose_streams_fall_silent_is_dropped_at_once_not_at_the_next_refresh(tmp_path: Path) -> None:
    async def main() -> dict[str, Any]:
        async with running_simulator(SimulatorConfig(symbols=LISTED, seed=4, rate=2.0)) as sim:
            settings = {**SETTINGS, "watchdog_s": 1.5, "symbols_refresh_s": 3600.0}
            config = CollectorConfig(symbols=("all",), ws_base=sim.ws_base, rest_base=sim.rest_base, **settings)
            service = CollectorService(config, DataPaths.from_root(tmp_path / "data"))
            stop = asyncio.Event()
            collector = asyncio.create_task(service.run(stop))
            await eventually(
                lambda: service.symbols == LISTED and service.intake.streams["solusdt@aggTrade"].frames, ""
            )
            await sim.set_listing("SOLUSDT", "SETTLING")
            delisted_at = asyncio.get_running_loop().time()
            await eventually(lambda: "SOLUSDT" not in service.symbols, "SOLUSDT dropped", timeout_s=8.0)
            seen = {"after_s": asyncio.get_running_loop().time() - delisted_at, "health": service.health()[1]}
            await eventually(
                lambda: not any(s.startswith("solusdt@") for shard in service.shards for s in shard.streams),
                "its connections closed",
            )
            stop.set()
            assert await collector == 0
            return seen

    seen = asyncio.run(main())
    assert seen["after_s"] < 5.0, "within a few watchdog periods, not the hourly refresh"
    assert not [p for p in seen["health"]["problems"] if "solusdt" in p.lower()]
    records = load_sealed_records(tmp_path / "data" / "segments" / "sealed")
    fired = {r["s"] for r in records_of(records, "watchdog")}
    assert fired and all(stream.startswith("solusdt@") for stream in fired), "only the delisted streams were silent"
    closed = [r["reason"] for r in records_of(records, "disconnect") if "SOLUSDT" in r["reason"]]
    assert closed and all("-SOLUSDT" in reason for reason in closed)

"""Self-healing trades end to end: a fault is injected, the collector fills the hole from REST while it records, and
after compaction, consolidation and certification every trade the simulator issued is in ``prices`` exactly once
(``source`` says how it arrived), or lies in a hole the certificate declares with its reason; nothing is unexplained;
the REST weight stayed within the collector's budget (counted at the simulator)."""

from __future__ import annotations

import asyncio
import time

from harvest_pipeline.backfill.holes import AGG_TRADES_WEIGHT
from harvest_pipeline.collector.config import CollectorConfig
from tests.collector.harness import CollectorProcess, SimulatorProcess, collect_in_process, records_of, wait_for
from tests.collector.small_fs import Ballast, tmpfs
from tests.e2e.healing import compact_and_certify, reconcile_trades

SYMBOL = "BTCUSDT"
STREAM = "btcusdt@aggTrade"
BUDGET = CollectorConfig().rest_weight_per_minute
MiB = 1024 * 1024


def heal_in_process(tmp_path, scenario, **settings):
    """Record ``scenario`` with an in-process collector, then certify and reconcile."""
    records, accounting = collect_in_process(tmp_path, scenario, **settings)
    certificates = compact_and_certify(tmp_path / "data", SYMBOL)
    result = reconcile_trades(tmp_path / "data", accounting, certificates, SYMBOL)
    assert result.missing == [], f"{len(result.missing)} issued trades neither stored nor declared"
    assert_within_budget(accounting)
    return records, accounting, result


def assert_within_budget(accounting: dict) -> None:
    rest = accounting["rest"]
    assert rest["rejected"].get("429", 0) == 0 and rest["max_weight_per_minute"] <= BUDGET, rest


def test_skipped_ids_are_proven_absent_at_the_exchange_and_declared(tmp_path):
    async def scenario(sim, service):
        await asyncio.sleep(0.8)
        await sim.apply_fault({"fault": "skip_agg_ids", "symbol": SYMBOL, "count": 7})
        await asyncio.sleep(1.5)

    records, accounting, result = heal_in_process(tmp_path, scenario)

    [(low, high)] = result.never_issued
    assert high - low + 1 == 7
    assert [(a, b) for a, b, _ in result.declared] == [(low, high)]
    assert "serves no trade" in result.declared[0][2]
    assert result.stored_by_source == {"ws": result.issued}, "nothing was missing but the ids never issued"
    fetched = [r for r in records_of(records, "backfill", STREAM) if r["outcome"] == "fetched"]
    assert fetched and all(r["status"] == 200 and r["weight"] == AGG_TRADES_WEIGHT for r in fetched)


def test_a_dropped_connection_is_healed_from_rest(tmp_path):
    async def scenario(sim, service):
        await asyncio.sleep(0.8)
        [market] = [c for c in sim.connection_list() if STREAM in c["streams"]]
        await sim.apply_fault({"fault": "drop_connection", "connection": market["id"]})
        await asyncio.sleep(2.0)

    records, _, result = heal_in_process(tmp_path, scenario, backoff_initial_s=0.5)

    assert result.declared == []
    assert result.stored_by_source["rest"] > 0, "the ids missed while reconnecting came from REST"
    assert result.stored_by_source["ws"] + result.stored_by_source["rest"] == result.issued
    rest_trades = records_of(records, "rest_trade", STREAM)
    requests = {r["n"]: r for r in records_of(records, "backfill", STREAM)}
    assert all(requests[t["r"]]["outcome"] == "fetched" for t in rest_trades), "each REST trade names its request"


def test_a_stalled_stream_is_healed_from_rest(tmp_path):
    async def scenario(sim, service):
        await asyncio.sleep(0.8)
        await sim.apply_fault({"fault": "stall_stream", "stream": STREAM, "seconds": 2.0})
        await asyncio.sleep(4.0)

    records, _, result = heal_in_process(tmp_path, scenario)

    assert records_of(records, "watchdog", STREAM), "the stall was noticed"
    assert result.declared == [] and result.stored_by_source["rest"] > 0
    assert result.stored_by_source["ws"] + result.stored_by_source["rest"] == result.issued


def test_trades_lost_to_a_full_disk_are_refetched_once_it_has_room(tmp_path):
    with tmpfs(tmp_path / "disk", 24 * MiB) as disk:
        ballast = Ballast(disk)

        async def scenario(sim, service):
            await asyncio.sleep(1.0)
            ballast.fill(0)
            await asyncio.sleep(2.5)
            ballast.remove()
            await asyncio.sleep(3.0)

        records, accounting = collect_in_process(
            disk, scenario, rate=5.0, queue_max_bytes=MiB // 2, write_retry_max_s=0.2, disk_free_warn_bytes=MiB
        )
        certificates = compact_and_certify(disk / "data", SYMBOL)
        result = reconcile_trades(disk / "data", accounting, certificates, SYMBOL)

    losses = [r for r in records_of(records, "write_loss", STREAM) if r.get("first_id") is not None]
    assert losses, "the full disk cost aggTrade frames, with their id range"
    assert result.missing == [] and result.declared == []
    assert result.stored_by_source["rest"] > 0 and sum(result.stored_by_source.values()) == result.issued
    assert_within_budget(accounting)


def test_after_kill_9_the_down_time_is_healed_except_what_the_exchange_no_longer_serves(tmp_path):
    horizon_s = 2.0
    sim = SimulatorProcess(tmp_path, rate=2.0, extra_args=("--agg-trade-horizon-s", str(horizon_s)))
    collector = CollectorProcess(tmp_path, sim)
    wait_for(lambda: collector.health()[1]["streams"][STREAM]["frames"] > 0, 10, "first frames")
    time.sleep(0.5)
    collector.kill()
    time.sleep(2 * horizon_s)  # the exchange keeps trading, and forgets the first half of the down time
    restarted = CollectorProcess(tmp_path, sim)
    wait_for(lambda: restarted.health()[1]["streams"][STREAM]["frames"] > 0, 10, "frames after the restart")
    time.sleep(2.0)
    accounting = sim.stop()
    assert restarted.terminate() == 0

    certificates = compact_and_certify(tmp_path / "data", SYMBOL)
    result = reconcile_trades(tmp_path / "data", accounting, certificates, SYMBOL)

    assert result.missing == []
    assert result.stored_by_source["rest"] > 0, "the served part of the down time came from REST"
    [(low, high, reason)] = result.declared
    assert high < accounting["trades"][SYMBOL]["forgotten_below"], "only ids past the horizon are declared"
    assert "serves no trade" in reason
    assert result.stored_by_source["ws"] + result.stored_by_source["rest"] + (high - low + 1) == result.issued
    assert_within_budget(accounting)

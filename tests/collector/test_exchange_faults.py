"""Each exchange-side failure is detected, written down as a record, and recovered from, with the process alive."""

import asyncio

from tests.collector.harness import collect_in_process, records_of, sent_per_stream
from tests.collector.sealed import frames_per_stream


def test_every_frame_sent_is_sealed_exactly_including_bad_and_repeated_ones(tmp_path):
    async def scenario(sim, service):
        await asyncio.sleep(1.0)
        await sim.apply_fault({"fault": "malformed", "stream": "btcusdt@aggTrade", "count": 3})
        await sim.apply_fault({"fault": "truncated", "stream": "ethusdt@bookTicker", "count": 2})
        await sim.apply_fault({"fault": "repeat", "stream": "ethusdt@depth@100ms", "count": 4})
        await asyncio.sleep(1.5)

    records, accounting = collect_in_process(tmp_path, scenario, symbols=("BTCUSDT", "ETHUSDT"))
    expected = sent_per_stream(accounting)
    assert accounting["streams"]["btcusdt@aggTrade"]["malformed"] == 3
    # garbage without a readable stream name is kept as stream "unknown" on the connection it arrived on
    expected["btcusdt@aggTrade"] -= 3
    expected["unknown"] = 3
    assert dict(frames_per_stream(records)) == expected
    market = {r["c"] for r in records_of(records, "frame", "btcusdt@aggTrade")}
    assert {r["c"] for r in records_of(records, "bad_frame", "unknown")} <= market
    bad = records_of(records, "bad_frame")
    assert len(bad) == 5 and all(r["reason"] and r["raw_b64"] for r in bad)
    assert not records_of(records, "write_loss")


def test_pu_chain_break_records_a_gap_and_resnapshots_that_symbol_only(tmp_path):
    async def scenario(sim, service):
        await asyncio.sleep(1.0)
        await sim.apply_fault({"fault": "break_pu", "symbol": "ETHUSDT"})
        await asyncio.sleep(1.0)

    records, _ = collect_in_process(tmp_path, scenario, symbols=("BTCUSDT", "ETHUSDT"))
    gaps = records_of(records, "gap", "ethusdt@depth@100ms")
    assert len(gaps) == 1 and gaps[0]["reason"] == "depth pu chain break"
    assert not records_of(records, "gap", "btcusdt@depth@100ms")
    snapshots = records_of(records, "snapshot")
    assert sorted((r["symbol"], r["reason"]) for r in snapshots) == [
        ("BTCUSDT", "start"),
        ("ETHUSDT", "pu chain break"),
        ("ETHUSDT", "start"),
    ]
    resnapshot = next(r for r in snapshots if r["reason"] == "pu chain break")
    assert resnapshot["t"] > gaps[0]["t"] and "lastUpdateId" in resnapshot["f"]


def test_agg_trade_id_jump_is_recorded_as_a_gap_with_the_missing_count(tmp_path):
    async def scenario(sim, service):
        await asyncio.sleep(0.8)
        await sim.apply_fault({"fault": "skip_agg_ids", "symbol": "BTCUSDT", "count": 5})
        await asyncio.sleep(0.8)

    records, _ = collect_in_process(tmp_path, scenario)
    gaps = records_of(records, "gap", "btcusdt@aggTrade")
    assert [(g["reason"], g["missing"]) for g in gaps] == [("aggTrade id jump", 5)]


def test_stalled_stream_fires_the_watchdog_and_its_connection_is_replaced(tmp_path):
    async def scenario(sim, service):
        await asyncio.sleep(0.8)
        await sim.apply_fault({"fault": "stall_stream", "stream": "btcusdt@bookTicker", "seconds": 2.0})
        await asyncio.sleep(3.5)

    records, _ = collect_in_process(tmp_path, scenario)
    fired = records_of(records, "watchdog", "btcusdt@bookTicker")
    assert fired and not fired[0]["never_received"] and fired[0]["silent_s"] >= 1.0
    assert not records_of(records, "watchdog", "btcusdt@aggTrade")
    replaced = [r for r in records_of(records, "disconnect") if r["reason"].startswith("replaced: watchdog")]
    assert replaced
    after = [r for r in records_of(records, "frame", "btcusdt@bookTicker") if r["t"] > fired[-1]["t"]]
    assert after, "the stream recovered after the stall"


def test_dropped_connections_reconnect_and_the_missed_ids_are_gaps(tmp_path):
    async def scenario(sim, service):
        await asyncio.sleep(0.8)
        await sim.apply_fault({"fault": "drop_all"})
        await asyncio.sleep(1.5)

    records, _ = collect_in_process(tmp_path, scenario)
    dropped = [r for r in records_of(records, "disconnect") if "replaced" not in r["reason"]]
    assert len(records_of(records, "connect")) >= 4 and len(dropped) >= 2
    assert records_of(records, "snapshot")[-1]["t"] > dropped[0]["t"], "the book was resynchronised"
    depth_gaps = records_of(records, "gap", "btcusdt@depth@100ms")
    assert depth_gaps and all(g["t"] > dropped[0]["t"] for g in depth_gaps)


def test_wrong_route_silence_is_detected_while_other_streams_keep_flowing(tmp_path):
    async def scenario(sim, service):
        await asyncio.sleep(2.5)

    records, _ = collect_in_process(
        tmp_path, scenario, routes={"aggTrade": "public", "depth@100ms": "public", "bookTicker": "public"}
    )
    fired = records_of(records, "watchdog", "btcusdt@aggTrade")
    assert fired and fired[0]["never_received"]
    assert not records_of(records, "frame", "btcusdt@aggTrade")
    ticker = records_of(records, "frame", "btcusdt@bookTicker")
    assert ticker and ticker[-1]["t"] > fired[0]["t"]


def test_proactive_rotation_overlaps_so_the_lifetime_cut_loses_nothing(tmp_path):
    async def scenario(sim, service):
        await sim.apply_fault({"fault": "lifetime", "seconds": 2.0})
        await asyncio.sleep(3.5)

    records, _ = collect_in_process(tmp_path, scenario, max_connection_age_s=1.2, rotation_jitter_s=0.0)
    reasons = [r["reason"] for r in records_of(records, "disconnect")]
    assert any(reason == "replaced: lifetime rotation" for reason in reasons)
    assert not [reason for reason in reasons if "closed by server" in reason and "shutdown" not in reason]
    assert not records_of(records, "gap")


def test_server_lifetime_cut_is_recorded_and_reconnected(tmp_path):
    async def scenario(sim, service):
        await asyncio.sleep(0.5)
        await sim.apply_fault({"fault": "lifetime", "seconds": 1.0})
        await asyncio.sleep(2.0)

    records, _ = collect_in_process(tmp_path, scenario)
    cuts = [r for r in records_of(records, "disconnect") if "closed by server" in r["reason"]]
    assert cuts
    assert [r for r in records_of(records, "frame") if r["t"] > cuts[0]["t"]], "frames resume after the cut"


def test_rate_limited_snapshots_wait_for_retry_after_then_succeed(tmp_path):
    records, accounting = collect_in_process(tmp_path, _with_rest_rejection, symbols=("BTCUSDT", "ETHUSDT"))
    rejected = [r for r in records_of(records, "gap") if r["reason"] == "depth snapshot rejected: HTTP 429"]
    assert rejected and rejected[0]["retry_after_s"] == 1.0
    snapshots = records_of(records, "snapshot")
    assert {r["symbol"] for r in snapshots} == {"BTCUSDT", "ETHUSDT"}
    assert min(r["t"] for r in snapshots) - rejected[0]["t"] >= 0.9e9, "Retry-After was honoured"
    assert accounting["rest"]["rejected"]["429"] == 1


async def _with_rest_rejection(sim, service):
    await sim.apply_fault({"fault": "rest_status", "status": 429, "count": 1, "retry_after": 1})
    await asyncio.sleep(2.5)

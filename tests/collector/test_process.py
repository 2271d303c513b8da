"""The collector as a real process: SIGTERM seals, kill -9 loses only an unflushed tail, a failing disk is survived."""

import random
import time

import psutil

from harvest_pipeline.segments import OPEN_SUFFIX
from tests.collector.faulty_fs import FAULT_MARKER_ENV
from tests.collector.harness import (
    CollectorProcess,
    SimulatorProcess,
    records_of,
    run_kill_loop,
    sent_per_stream,
    wait_for,
)
from tests.collector.sealed import frames_per_stream, load_sealed_records, lost_per_stream

KILL_CYCLES = 20
FLUSH_BOUND_NS = 500_000_000


def open_parts(tmp_path):
    return list((tmp_path / "data" / "segments" / "open" / "t1").glob(f"*{OPEN_SUFFIX}"))


def test_sigterm_drains_seals_and_exits_0(tmp_path):
    sim = SimulatorProcess(tmp_path, symbols="BTCUSDT,ETHUSDT")
    collector = CollectorProcess(tmp_path, sim, symbols=("BTCUSDT", "ETHUSDT"), segment_max_age_s=30.0)
    time.sleep(1.5)
    started = time.monotonic()
    assert collector.terminate() == 0
    assert time.monotonic() - started < 5.0
    sim.stop()
    assert not open_parts(tmp_path)
    records = load_sealed_records(tmp_path / "data" / "segments" / "sealed")
    assert sum(frames_per_stream(records).values()) > 100
    shutdowns = [r for r in records_of(records, "disconnect") if r["reason"] == "shutdown"]
    assert len(shutdowns) == 2, "both connections were closed by the shutdown and recorded"


def test_kill_9_loop_keeps_sealed_segments_valid_and_loses_at_most_the_unflushed_tail(tmp_path):
    result = run_kill_loop(tmp_path, KILL_CYCLES, random.Random(9))
    assert result.recovered_records == result.open_segments_at_kill > 0, "each left-open segment was recovered"
    assert not open_parts(tmp_path)
    assert max(result.tail_loss_ns) < FLUSH_BOUND_NS, "a kill lost more than the unflushed tail"
    assert result.holes == [], "only the tail of a killed connection may be lost"


def test_failing_disk_is_survived_with_bounded_memory_and_the_loss_recorded_exactly(tmp_path):
    marker = tmp_path / "disk-fails"
    sim = SimulatorProcess(tmp_path, symbols="BTCUSDT,ETHUSDT", rate=2.0)
    collector = CollectorProcess(
        tmp_path,
        sim,
        extra_env={FAULT_MARKER_ENV: str(marker)},
        symbols=("BTCUSDT", "ETHUSDT"),
        fs_factory="tests.collector.faulty_fs:from_env",
        queue_max_lines=300,
        write_retry_max_s=0.2,
    )
    process = psutil.Process(collector.process.pid)
    time.sleep(1.0)
    rss_before = process.memory_info().rss
    marker.touch()
    rss_samples = []
    for _ in range(10):
        time.sleep(0.2)
        rss_samples.append(process.memory_info().rss)
    status, report = collector.health()
    assert status == 503 and not report["writer"]["healthy"] and report["writer"]["queue_lines"] <= 300
    assert collector.process.poll() is None
    marker.unlink()
    wait_for(lambda: collector.health()[0] == 200, 30, "the writer to recover")
    accounting = sim.stop()
    time.sleep(0.3)
    assert collector.terminate() == 0

    assert max(rss_samples) - rss_before < 20 * 1024**2, "memory stayed bounded while the disk failed"
    records = load_sealed_records(tmp_path / "data" / "segments" / "sealed")
    stored, lost = frames_per_stream(records), lost_per_stream(records)
    assert sum(lost.values()) > 0
    for stream, sent in sent_per_stream(accounting).items():
        assert stored[stream] + lost[stream] == sent, stream
    for loss in records_of(records, "write_loss"):
        assert loss["first_recv_ns"] <= loss["last_recv_ns"] < loss["t"]


def test_kill_9_down_time_is_declared_so_every_id_sent_meanwhile_lies_in_a_gap(tmp_path):
    sim = SimulatorProcess(tmp_path, rate=2.0)
    rng = random.Random(4)
    for _ in range(3):
        collector = CollectorProcess(tmp_path, sim)
        wait_for(lambda c=collector: c.health()[1]["streams"]["btcusdt@aggTrade"]["frames"] > 0, 10, "first frames")
        time.sleep(rng.uniform(0.2, 0.8))
        collector.kill()
        time.sleep(1.0)  # the exchange keeps trading while nobody records
    final = CollectorProcess(tmp_path, sim)
    time.sleep(1.0)
    accounting = sim.stop()
    assert final.terminate() == 0

    stream = "btcusdt@aggTrade"
    sent: set[int] = set()
    for connection in accounting["connections"].values():
        tally = connection["streams"].get(stream)
        if tally and tally["first_id"] is not None:
            sent.update(range(tally["first_id"], tally["last_id"] + 1))
    first_sent, last_sent = min(sent), max(sent)
    sent = set(range(first_sent, last_sent + 1))  # the exchange traded every id, recorded or not
    records = load_sealed_records(tmp_path / "data" / "segments" / "sealed")
    stored = {r["f"]["data"]["a"] for r in records_of(records, "frame", stream)}
    gaps = [(g["expected"], g["got"] - 1) for g in records_of(records, "gap", stream) if "expected" in g]
    missing = sorted(sent - stored)
    assert len(missing) > 100, "the down time should have cost trades"
    undeclared = [i for i in missing if not any(low <= i <= high for low, high in gaps)]
    assert undeclared == [], f"{len(undeclared)} ids lost without a gap, e.g. {undeclared[:5]}"
    windows = [g for g in records_of(records, "gap", stream) if g["reason"] == "collector down (crash)"]
    assert len(windows) == 3 and all(w["from_time_ms"] < w["to_time_ms"] for w in windows)

"""The collector on a real small file system that fills up, refuses seals or is too slow: it stays alive, stays within
its memory bound, and per stream what the simulator sent equals what was stored plus what was declared lost."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from harvest_pipeline.backfill.holes import PAGE_MEMORY_BYTES
from harvest_pipeline.segments import OPEN_SUFFIX, iter_records, list_sealed_segments
from tests.collector.faulty_fs import FAULT_MARKER_ENV, SLOW_WRITE_ENV
from tests.collector.harness import REPO_ROOT, CollectorProcess, SimulatorProcess, records_of, sent_per_stream, wait_for
from tests.collector.sealed import frames_per_stream, load_sealed_records, lost_per_stream
from tests.collector.small_fs import Ballast, read_only, tmpfs

MiB = 1024 * 1024
QUEUE_MAX_BYTES = 8 * MiB
MEMORY_BOUND = 1.25 * QUEUE_MAX_BYTES + PAGE_MEMORY_BYTES
"""The queue's bound, plus the one REST backfill page in flight (the backfill refills the holes the losses left)."""
SMALL_DISK = {
    "queue_max_bytes": QUEUE_MAX_BYTES,
    "queue_max_lines": 1_000_000,
    "segment_max_age_s": 1.0,
    "write_retry_max_s": 0.3,
    "disk_free_warn_bytes": 1 * MiB,
    "shutdown_deadline_s": 3.0,
}


class RssWatch:
    """The collector's resident memory: a baseline, then the peak while sampling."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline

    def settle(self, seconds: float = 1.0) -> None:
        """Take the baseline as the peak of normal running just before a fault."""
        self.baseline = self.process.memory_info().rss
        for _ in range(int(seconds / 0.1)):
            time.sleep(0.1)
            self.baseline = max(self.baseline, self.process.memory_info().rss)
        self.peak = self.baseline

    def sample(self) -> None:
        self.peak = max(self.peak, self.process.memory_info().rss)

    def wait(self, predicate, timeout: float, what: str) -> None:
        def sampled() -> bool:
            self.sample()
            return predicate()

        wait_for(sampled, timeout, what)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def within(self, bound: float) -> bool:
        print(
            f"RSS {self.baseline / MiB:.1f} MiB -> peak {self.peak / MiB:.1f} MiB: +{self.growth / MiB:.2f} MiB, "
            f"bound {bound / MiB:.2f} MiB"
        )
        return self.growth <= bound


def status_screen(tmp_path: Path, data: Path, metrics_url: str) -> str:
    """What ``harvest status`` prints (exit code 1: something needs attention)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    command = [
        sys.executable,
        "-m",
        "harvest_pipeline.cli",
        "status",
        "--data",
        str(data),
        "--metrics-url",
        metrics_url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stdout


def record_on(
    disk: Path, tmp_path: Path, symbols: str = "BTCUSDT", rate: float = 5.0
) -> tuple[SimulatorProcess, Path, CollectorProcess]:
    """A simulator, and a collector with its data root on ``disk``, healthy."""
    sim = SimulatorProcess(tmp_path, symbols=symbols, rate=rate)
    data = disk / "data"
    collector = CollectorProcess(tmp_path, sim, data_root=str(data), symbols=tuple(symbols.split(",")), **SMALL_DISK)
    wait_for(lambda: collector.health()[0] == 200, 20, "a healthy start")
    return sim, data, collector


def problems(collector: CollectorProcess) -> list[str]:
    return collector.health()[1].get("problems", [])


def dropping(collector: CollectorProcess) -> bool:
    return any(problem.startswith("dropping records") for problem in problems(collector))


def assert_reconciled(sealed_root: Path, accounting: dict) -> list[dict]:
    """Per stream: sent == stored + declared lost; returns the sealed records."""
    records = load_sealed_records(sealed_root)
    stored, lost = frames_per_stream(records), lost_per_stream(records)
    for stream, sent in sent_per_stream(accounting).items():
        assert stored[stream] + lost[stream] == sent, (stream, sent, stored[stream], lost[stream])
    return records


def open_part_records(data_root: Path) -> list[dict]:
    records = []
    for part in sorted((data_root / "segments" / "open" / "t1").glob(f"*{OPEN_SUFFIX}")):
        records += [record for _, record in iter_records(part) if isinstance(record, dict)]
    return records


def test_disk_full_then_freed_by_less_than_the_pending_size_writes_the_losses_first(tmp_path):
    with tmpfs(tmp_path / "disk", 48 * MiB) as disk:
        sim, data, collector = record_on(disk, tmp_path, "BTCUSDT,ETHUSDT", rate=10.0)
        rss = RssWatch(collector.process.pid)
        rss.settle()
        ballast = Ballast(disk)
        ballast.fill(0)
        rss.wait(lambda: dropping(collector), 60, "the full queue to drop records")
        status, report = collector.health()
        assert status == 503 and report["writer"]["state"] == "writing" and not report["writer"]["healthy"]
        assert report["disk_free_bytes"] == 0 and any("below the guard" in p for p in report["problems"])
        assert report["writer"]["queue_bytes"] <= QUEUE_MAX_BYTES
        screen = status_screen(tmp_path, data, collector.info["metrics_url"])
        assert "problem: dropping records" in screen and "problem: cannot append to segment" in screen, screen
        for _ in range(10):
            time.sleep(0.2)
            rss.sample()

        ballast.release(MiB)  # far less than the ~8 MiB the queue holds
        rss.wait(lambda: records_of(open_part_records(data), "write_loss"), 20, "loss records in the open segment")
        written = open_part_records(data)
        first_loss = next(i for i, r in enumerate(written) if r["k"] == "write_loss")
        assert all(r["k"] == "write_loss" for r in written[first_loss : first_loss + 4]), "losses are written first"
        assert collector.process.poll() is None

        ballast.remove()
        rss.wait(lambda: collector.health()[0] == 200, 60, "the collector to become healthy again")
        accounting = sim.stop()
        time.sleep(0.3)
        assert collector.terminate() == 0
        assert rss.within(MEMORY_BOUND)

        records = assert_reconciled(data / "segments" / "sealed", accounting)
        assert sum(lost_per_stream(records).values()) > 0


def test_restart_on_a_full_disk_recovers_and_learns_the_losses_the_last_run_could_not_write(tmp_path):
    with tmpfs(tmp_path / "disk", 32 * MiB) as disk:
        sim, data, first = record_on(disk, tmp_path)
        ballast = Ballast(disk)
        ballast.fill(0)
        wait_for(lambda: dropping(first), 60, "the full queue to drop records")
        assert first.terminate() == 1, "exit 1: records could not be written before the deadline"
        journal = data / "segments" / "open" / "t1" / "loss-journal"
        assert journal.exists()
        [part] = sorted((data / "segments" / "open" / "t1").glob(f"*{OPEN_SUFFIX}"))[-1:]
        ballast.release(64 * 1024)
        with open(part, "ab") as handle:  # as if a crash cut the last line
            handle.write(b'{"t":1,"c":"x","n":1,"k":"fra')
        ballast.fill(0)

        second = CollectorProcess(tmp_path, sim, data_root=str(data), **SMALL_DISK)
        time.sleep(2.0)
        status, report = second.health()
        assert second.process.poll() is None, "start-up on a full disk must not crash"
        assert status == 503 and report["writer"]["state"] == "recovering", report["writer"]
        assert any("recover open segments" in problem for problem in report["problems"]), report["problems"]
        assert not list(part.parent.parent.parent.glob("sealed/*/*.tmp")), "no temp file left behind"

        ballast.remove()
        wait_for(lambda: second.health()[0] == 200, 60, "recovery once space is back")
        accounting = sim.stop()
        time.sleep(0.3)
        assert second.terminate() == 0

        sealed_root = data / "segments" / "sealed"
        records = assert_reconciled(sealed_root, accounting)
        [recovered] = records_of(records, "recovered")
        assert recovered["segment"] == part.name.removesuffix(OPEN_SUFFIX) and recovered["torn_lines_cut"] == 1
        metas = {segment.name: segment.load_meta() for segment in list_sealed_segments(sealed_root)}
        assert metas[recovered["segment"]].torn_lines_cut == 1
        shutdown_losses = [r for r in records_of(records, "write_loss") if "shutdown" in r["reason"]]
        assert shutdown_losses, "the records the first run could not write are declared by the second"
        [down] = [r for r in records_of(records, "gap") if r["reason"].startswith("collector down")][:1]
        assert down["from_time_ms"] <= down["to_time_ms"]


def test_a_seal_only_failure_keeps_appending_and_loses_nothing(tmp_path):
    with tmpfs(tmp_path / "disk", 64 * MiB) as disk:
        sim, data, collector = record_on(disk, tmp_path, rate=2.0)
        sealed_root = data / "segments" / "sealed"
        with read_only(sealed_root):
            wait_for(lambda: len(collector.health()[1]["writer"]["unsealed"]) >= 3, 30, "segments set aside")
            status, report = collector.health()
            assert status == 503 and any("cannot seal segment" in p for p in report["problems"])
            assert report["writer"]["healthy"] and not report["writer"]["dropped"], "appending went on"
        wait_for(lambda: collector.health()[0] == 200, 30, "sealing to work again")
        accounting = sim.stop()
        time.sleep(0.3)
        assert collector.terminate() == 0
        records = assert_reconciled(sealed_root, accounting)
        assert not lost_per_stream(records)
        assert not list((data / "segments" / "open" / "t1").glob(f"*{OPEN_SUFFIX}"))


def test_overload_with_a_small_queue_is_reported_and_every_book_is_resnapshotted_after_its_losses(tmp_path):
    slow = tmp_path / "disk-is-slow"
    slow.touch()
    with tmpfs(tmp_path / "disk", 256 * MiB) as disk:
        sim = SimulatorProcess(tmp_path, symbols="BTCUSDT,ETHUSDT", rate=50.0)
        data = disk / "data"
        settings = {**SMALL_DISK, "queue_max_bytes": 2 * MiB, "fs_factory": "tests.collector.faulty_fs:slow_from_env"}
        slow_disk = {SLOW_WRITE_ENV: "0.1", FAULT_MARKER_ENV: str(slow)}
        symbols = ("BTCUSDT", "ETHUSDT")
        collector = CollectorProcess(
            tmp_path, sim, extra_env=slow_disk, data_root=str(data), symbols=symbols, **settings
        )
        rss = RssWatch(collector.process.pid)
        slow.unlink()
        rss.wait(lambda: collector.health()[0] == 200, 20, "a healthy start")
        rss.settle()
        slow.touch()
        rss.wait(lambda: dropping(collector), 30, "overload to drop records")
        status, report = collector.health()
        assert status == 503 and report["writer"]["queue_bytes"] <= 2 * MiB
        for _ in range(15):
            time.sleep(0.2)
            rss.sample()
        books = collector.health()[1]["books_synced"]
        assert not any(books.values()), f"books that lost diffs must not count as synced: {books}"
        slow.unlink()
        rss.wait(lambda: collector.health()[0] == 200, 60, "the backlog written and every book resnapshotted")
        accounting = sim.stop()
        time.sleep(0.3)
        assert collector.terminate() == 0
        assert rss.within(1.25 * 2 * MiB + PAGE_MEMORY_BYTES)
        records = assert_reconciled(data / "segments" / "sealed", accounting)

    for symbol in ("btcusdt", "ethusdt"):
        streams = (f"{symbol}@depth@100ms", f"{symbol}@depthSnapshot")
        order = [r["k"] for r in records if r.get("s") in streams and r["k"] in ("write_loss", "snapshot")]
        assert "write_loss" in order, f"{symbol}: the overload cost no book records; make it heavier"
        last_loss = len(order) - 1 - order[::-1].index("write_loss")
        assert "snapshot" in order[last_loss:], f"{symbol}: no snapshot was written after its last loss"

import logging
import time
from pathlib import Path

from harvest_pipeline.collector.buffer import BoundedLineQueue, DropLedger
from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.metrics import CollectorMetrics
from harvest_pipeline.collector.writer import SegmentWriter
from harvest_pipeline.segments import SegmentNamer, encode_frame, parse_record
from tests.collector.faulty_fs import SwitchableFaultFS
from tests.collector.sealed import frames_per_stream, load_sealed_records, lost_per_stream

CONFIG = CollectorConfig(
    segment_max_age_s=0.3, fsync_interval_s=0.05, write_retry_initial_s=0.01, write_retry_max_s=0.05
)


def build_writer(tmp_path: Path, fs, queue: BoundedLineQueue, ledger: DropLedger) -> SegmentWriter:
    open_dir = tmp_path / "open" / "c1"
    open_dir.mkdir(parents=True)
    return SegmentWriter(
        CONFIG, queue, ledger, SegmentNamer("c1"), open_dir, tmp_path / "sealed", fs, time.time_ns, CollectorMetrics()
    )


def offer(queue: BoundedLineQueue, ledger: DropLedger, stream: str, count: int) -> None:
    for n in range(count):
        line = encode_frame(time.time_ns(), "x-1", n, stream, b'{"stream":"%b","data":{"n":%d}}' % (stream.encode(), n))
        if not queue.offer(line):
            ledger.record(line)


def test_queue_refuses_past_its_line_and_byte_bounds():
    queue = BoundedLineQueue(max_lines=3, max_bytes=10_000)
    ledger = DropLedger()
    offer(queue, ledger, "a@x", 5)
    assert queue.depth == 3 and ledger.total == {"a@x": 2}
    assert [parse_record(line.data)["n"] for line in queue.take_chunk(1 << 20, 0)] == [0, 1, 2], "oldest first"
    small = BoundedLineQueue(max_lines=100, max_bytes=1000)
    offer(small, ledger, "b@x", 5)
    assert small.bytes <= 1000 and small.depth + ledger.total["b@x"] == 5


def test_disk_failure_is_survived_and_the_loss_is_recorded_exactly(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    fs = SwitchableFaultFS()
    queue, ledger = BoundedLineQueue(max_lines=50, max_bytes=1 << 20), DropLedger()
    writer = build_writer(tmp_path, fs, queue, ledger)
    writer.start()
    offer(queue, ledger, "btcusdt@aggTrade", 30)
    time.sleep(0.1)
    fs.failing = True
    offer(queue, ledger, "btcusdt@aggTrade", 30)
    time.sleep(0.2)
    offer(queue, ledger, "btcusdt@aggTrade", 100)
    offer(queue, ledger, "ethusdt@aggTrade", 10)
    assert queue.depth <= 50
    time.sleep(0.2)
    fs.failing = False
    offer(queue, ledger, "ethusdt@aggTrade", 5)
    assert writer.stop(5.0)
    assert fs.failures > 0 and any("will retry" in message for message in caplog.messages)
    records = load_sealed_records(tmp_path / "sealed")
    stored, lost = frames_per_stream(records), lost_per_stream(records)
    assert stored["btcusdt@aggTrade"] + lost["btcusdt@aggTrade"] == 160
    assert stored["ethusdt@aggTrade"] + lost["ethusdt@aggTrade"] == 15
    assert sum(lost.values()) == sum(ledger.total.values()) > 0
    assert not list((tmp_path / "open" / "c1").glob("*.part"))


def test_segments_are_sealed_by_the_timer_without_traffic(tmp_path):
    queue, ledger = BoundedLineQueue(100, 1 << 20), DropLedger()
    writer = build_writer(tmp_path, SwitchableFaultFS(), queue, ledger)
    writer.start()
    offer(queue, ledger, "a@x", 3)
    time.sleep(0.8)
    assert len(list((tmp_path / "sealed").rglob("*.jsonl"))) == 1, "sealed by age with no further frames"
    offer(queue, ledger, "a@x", 2)
    assert writer.stop(5.0)
    assert frames_per_stream(load_sealed_records(tmp_path / "sealed"))["a@x"] == 5

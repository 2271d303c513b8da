"""The raw segment format: encoding, sealing, crash recovery and discovery, on real files."""

import errno
import hashlib
from pathlib import Path

import pytest

from harvest_pipeline.segments import (
    OPEN_SUFFIX,
    FileSystem,
    OpenSegment,
    PartialAppend,
    SegmentNamer,
    SegmentStats,
    encode_control,
    encode_frame,
    encode_snapshot,
    iter_records,
    list_sealed_segments,
    parse_record,
    recover_open_segment,
    segment_date,
)

RAW = b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"a":7,"p":"1.50","q":"2"}}'


def test_frame_record_embeds_the_raw_frame_byte_for_byte_after_the_fixed_prefix():
    line = encode_frame(123, "b1-1", 4, "btcusdt@aggTrade", RAW)
    assert line.data == b'{"t":123,"c":"b1-1","n":4,"k":"frame","s":"btcusdt@aggTrade","f":' + RAW + b"}\n"
    assert parse_record(line.data)["f"]["data"]["a"] == 7


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty frame"),
        (b'{"a":"x\ny"}', "frame contains a line break"),
        (b'{"a":"\xff"}', "invalid UTF-8 at byte 6"),
        (b"[1,2]", "frame is not a JSON object"),
    ],
)
def test_frames_that_cannot_be_embedded_become_bad_frame_records(raw, reason):
    record = parse_record(encode_frame(1, "c", 1, "s@x", raw).data)
    assert (record["k"], record["reason"], record["raw_len"]) == ("bad_frame", reason, len(raw))


def test_non_ascii_utf8_frames_and_unsafe_stream_names_take_the_slow_path_correctly():
    assert encode_frame(1, "c", 1, "s@x", ' {"q":"é"} '.encode()).kind == "frame"
    assert parse_record(encode_frame(1, "c", 1, 's"x', RAW).data)["reason"] == "unsafe stream name"


def test_batch_statistics_equal_line_by_line_statistics():
    lines = [
        encode_frame(5, "c", 1, "a@x", RAW),
        encode_control(3, "c", 2, "gap", "b@x"),
        encode_control(9, "c", 3, "connect"),
    ]
    one, batch = SegmentStats(), SegmentStats()
    for line in lines:
        one.add(line.kind, line.stream, line.recv_ns, len(line.data))
    batch.add_lines(lines)
    assert batch == one and batch.first_recv_ns == 3 and batch.last_recv_ns == 9 and None not in batch.streams


class FailingReplace(FileSystem):
    def __init__(self):
        self.fail = True

    def replace(self, src: Path, dst: Path) -> None:
        if self.fail:
            raise OSError(errno.EIO, "injected")
        super().replace(src, dst)


def test_seal_can_be_retried_after_a_failure_and_the_sidecar_describes_the_file(tmp_path):
    fs = FailingReplace()
    namer = SegmentNamer("c1", "boot")
    segment = OpenSegment(tmp_path / "open", namer.next_name(1_780_000_000_000_000_000), "c1", 1, fs)
    (tmp_path / "open").mkdir()
    segment.append(
        [encode_frame(10, "c", 1, "a@x", RAW), encode_snapshot(11, "r", 1, "BTCUSDT", b'{"lastUpdateId":5}')]
    )
    with pytest.raises(OSError):
        segment.seal(tmp_path / "sealed")
    fs.fail = False
    meta = segment.seal(tmp_path / "sealed")
    [sealed] = list_sealed_segments(tmp_path / "sealed")
    data = sealed.path.read_bytes()
    assert sealed.load_meta() == meta and meta.lines == 2 and hashlib.sha256(data).hexdigest() == meta.sha256
    assert meta.kinds == {"frame": 1, "snapshot": 1} and sealed.path.parent.name == "date=2026-05-28"
    assert not list((tmp_path / "open").glob(f"*{OPEN_SUFFIX}"))


def test_recovery_cuts_a_torn_last_line_and_seals_the_rest(tmp_path):
    name = SegmentNamer("c1", "boot").next_name(1_780_000_000_000_000_000)
    path = tmp_path / f"{name}{OPEN_SUFFIX}"
    good = encode_frame(10, "c", 1, "a@x", RAW).data + encode_frame(11, "c", 2, "a@x", RAW).data
    path.write_bytes(good + b'{"t":12,"c":"c","n":3,"k":"fra')
    meta = recover_open_segment(path, tmp_path / "sealed", "c1").meta
    assert (meta.lines, meta.torn_lines_cut, meta.recovered) == (2, 1, True)
    [sealed] = list_sealed_segments(tmp_path / "sealed")
    assert sealed.path.read_bytes() == good
    assert [record["n"] for _, record in iter_records(sealed.path)] == [1, 2]


def test_names_sort_by_open_time_and_never_collide_across_boots():
    first, second = SegmentNamer("c1", "aaaa"), SegmentNamer("c1", "bbbb")
    names = [first.next_name(2_000), first.next_name(1_000), second.next_name(1_000)]
    assert len(set(names)) == 3
    assert sorted(names)[0].startswith("19700101T000000000001Z") and segment_date(names[0]) == "1970-01-01"


class FailsAfterTruncate(FileSystem):
    """Recovery's cut succeeds, then the rename fails once (as on a disk that fills at that moment)."""

    def __init__(self):
        self.failed = False

    def replace(self, src: Path, dst: Path) -> None:
        if not self.failed and dst.suffix == ".jsonl":
            self.failed = True
            raise OSError(errno.ENOSPC, "injected")
        super().replace(src, dst)


def test_recovery_interrupted_after_the_cut_still_counts_the_torn_line(tmp_path):
    name = SegmentNamer("c1", "boot").next_name(1_780_000_000_000_000_000)
    path = tmp_path / f"{name}{OPEN_SUFFIX}"
    good = encode_frame(10, "c", 1, "a@x", RAW).data
    path.write_bytes(good + b'{"t":12,"c":"c","n":2,"k":"fr')
    fs = FailsAfterTruncate()
    with pytest.raises(OSError):
        recover_open_segment(path, tmp_path / "sealed", "c1", fs)
    assert path.read_bytes() == good, "the cut was made before the failure"
    recovered = recover_open_segment(path, tmp_path / "sealed", "c1", fs)
    assert recovered.torn_lines_cut == 1 and recovered.meta.torn_lines_cut == 1
    [sealed] = list_sealed_segments(tmp_path / "sealed")
    assert sealed.load_meta().torn_lines_cut == 1 and sealed.path.read_bytes() == good


class AcceptsBytes(FileSystem):
    """A disk with ``room`` bytes left: writes beyond it fail with ENOSPC after a short write."""

    def __init__(self, room: int):
        self.room = room

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        accepted = data[: self.room]
        self.room -= len(accepted)
        return super().pwrite(fd, accepted, offset)


def test_an_append_on_a_filling_disk_keeps_the_whole_lines_that_fit_and_resumes_after_them(tmp_path):
    lines = [encode_frame(10 + i, "c", i + 1, "a@x", RAW) for i in range(10)]
    fs = AcceptsBytes(len(lines[0].data) * 3 + 5)
    (tmp_path / "open").mkdir()
    segment = OpenSegment(tmp_path / "open", SegmentNamer("c1", "b").next_name(1), "c1", 1, fs)
    with pytest.raises(PartialAppend) as failure:
        segment.append(lines)
    assert failure.value.lines_written == 3 and segment.stats.lines == 3
    fs.room = 10**9
    segment.append(lines[3:])
    meta = segment.seal(tmp_path / "sealed")
    [sealed] = list_sealed_segments(tmp_path / "sealed")
    assert sealed.path.read_bytes() == b"".join(line.data for line in lines)
    assert hashlib.sha256(sealed.path.read_bytes()).hexdigest() == meta.sha256 and meta.lines == 10

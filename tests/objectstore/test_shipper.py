"""The segment shipper against a real SeaweedFS S3 server: every sealed segment of its collector reaches the bucket
byte for byte (data, then the sidecar that marks it complete), local copies go only once verified and never the
newest, a failing bucket keeps everything local and counted, and a segment corrupted on disk is shipped as it is
instead of blocking the ones after it."""

from __future__ import annotations

import hashlib
import logging

import pytest

from harvest_pipeline import segments
from harvest_pipeline.collector.shipper import SegmentShipper
from harvest_pipeline.objectstore import BucketLocation, ObjectStore, UploadMismatch
from harvest_pipeline.paths import DataPaths
from tests.objectstore.seaweed import SeaweedS3
from tests.ops.segment_files import SECOND_NS, data_file, seal_segment, sidecar_file

START_NS = 1_795_000_000 * SECOND_NS
PREFIX = "team/usdm"


def shipper_for(seaweed: SeaweedS3, paths: DataPaths) -> SegmentShipper:
    store = ObjectStore(BucketLocation(seaweed.bucket, PREFIX), seaweed.filesystem())
    return SegmentShipper(store, paths.sealed_segments, "test")


def seal(paths: DataPaths, counter: int) -> str:
    return seal_segment(paths, START_NS + counter * SECOND_NS, START_NS + counter * SECOND_NS + 1, counter)


def stored(shipper: SegmentShipper, name: str) -> tuple[bytes, bytes]:
    key = segments.sealed_object_name(name)
    return shipper.store.read_bytes(key), shipper.store.read_bytes(key + segments.META_SUFFIX)


def test_every_segment_is_shipped_byte_for_byte_and_only_the_newest_local_copy_stays(tmp_path, seaweed):
    paths = DataPaths.from_root(tmp_path / "data")
    names = [seal(paths, counter) for counter in range(1, 4)]
    local = {name: (data_file(paths, name).read_bytes(), sidecar_file(paths, name).read_bytes()) for name in names}
    foreign = segments.segment_name(START_NS, "other", "abcd", 1)
    (paths.sealed_segments / f"date={segments.segment_date(foreign)}" / f"{foreign}.jsonl").write_bytes(b"{}\n")
    shipper = shipper_for(seaweed, paths)

    assert shipper.ship_pending() == 3
    assert {name: stored(shipper, name) for name in names} == local
    assert [s.name for s in shipper.own_segments()] == names[-1:], "the newest stays for the next start's resume"
    listed = {info.name for info in shipper.store.list_objects("segments")}
    assert listed == {f"{segments.sealed_object_name(n)}{suffix}" for n in names for suffix in ("", ".meta.json")}
    assert (shipper.state.shipped_segments, shipper.state.backlog_segments, shipper.state.backlog_bytes) == (3, 0, 0)

    assert shipper.ship_pending() == 0, "nothing new: nothing shipped again"
    newer = seal(paths, 4)
    assert shipper.ship_pending() == 1
    assert [s.name for s in shipper.own_segments()] == [newer]
    assert segments.find_sealed_segment(paths.sealed_segments, newer)
    foreign_path = paths.sealed_segments / f"date={segments.segment_date(foreign)}" / f"{foreign}.jsonl"
    assert foreign_path.exists(), "another collector's segments are its own shipper's business"


def test_while_the_bucket_is_down_everything_stays_local_and_counted_then_drains(tmp_path, seaweed):
    paths = DataPaths.from_root(tmp_path / "data")
    shipper = shipper_for(seaweed, paths)
    first = seal(paths, 1)
    assert shipper.ship_pending() == 1
    seaweed.stop()
    waiting = [seal(paths, counter) for counter in range(2, 5)]
    with pytest.raises(OSError):
        shipper.ship_pending()
    assert shipper.state.backlog_segments == 3 and shipper.state.backlog_bytes == sum(
        data_file(paths, name).stat().st_size for name in waiting
    )
    assert [s.name for s in shipper.own_segments()] == [first, *waiting], "nothing removed while the bucket is down"

    seaweed.start()
    assert shipper.ship_pending() == 3
    assert shipper.state.backlog_segments == 0
    for name in [first, *waiting]:
        assert shipper.store.exists(segments.sealed_object_name(name) + segments.META_SUFFIX)


def test_a_segment_corrupted_on_disk_is_shipped_as_it_is_and_does_not_block_the_next(tmp_path, seaweed, caplog):
    paths = DataPaths.from_root(tmp_path / "data")
    rotten, healthy = seal(paths, 1), seal(paths, 2)
    path = data_file(paths, rotten)
    body = bytearray(path.read_bytes())
    body[5] ^= 0x01
    path.write_bytes(bytes(body))
    shipper = shipper_for(seaweed, paths)

    with caplog.at_level(logging.WARNING, logger="harvest_pipeline.collector.shipper"):
        assert shipper.ship_pending() == 2
    assert "differs from its sidecar" in caplog.text
    data, sidecar = stored(shipper, rotten)
    assert data == bytes(body), "the bucket holds what the disk held; compaction's sidecar check reports it"
    assert segments.SegmentMeta.from_json(sidecar).sha256 != hashlib.sha256(data).hexdigest()
    assert stored(shipper, healthy)[0] == data_file(paths, healthy).read_bytes()


def test_an_object_that_reads_back_different_is_an_upload_mismatch(tmp_path, seaweed):
    store = ObjectStore(BucketLocation(seaweed.bucket, PREFIX), seaweed.filesystem())
    local = tmp_path / "object.bin"
    local.write_bytes(b"harvest" * 1000)
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    store.put_verified(local, "a/object.bin", 7000, digest)
    with pytest.raises(UploadMismatch, match="expected 7001 bytes"):
        store.put_verified(local, "a/object.bin", 7001, digest)
    copy = tmp_path / "copy.bin"
    store.download("a/object.bin", copy)
    assert copy.read_bytes() == local.read_bytes()

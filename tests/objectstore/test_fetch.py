"""Fetching segments from a real SeaweedFS bucket into a compaction host's ``sealed/`` folder: only complete ones
(sidecar present), never what is local or registered already, within a byte budget, inside the retention window."""

from __future__ import annotations

import datetime as dt

from harvest_pipeline import segments
from harvest_pipeline.collector.shipper import SegmentShipper
from harvest_pipeline.objectstore import BucketLocation, ObjectStore
from harvest_pipeline.objectstore.fetch import fetch_segments, folders_in_window
from harvest_pipeline.paths import DataPaths
from tests.ops.segment_files import SECOND_NS, data_file, seal_segment

START_NS = 1_795_000_000 * SECOND_NS


def test_only_complete_new_unregistered_segments_are_fetched_within_the_budget(tmp_path, seaweed):
    collector = DataPaths.from_root(tmp_path / "collector")
    names = [seal_segment(collector, START_NS + i * SECOND_NS, START_NS + i * SECOND_NS + 1, i) for i in range(1, 6)]
    originals = {name: data_file(collector, name).read_bytes() for name in names}
    store = ObjectStore(BucketLocation(seaweed.bucket, "p"), seaweed.filesystem())
    assert SegmentShipper(store, collector.sealed_segments, "test").ship_pending() == 5
    half_uploaded = segments.sealed_object_name(names[-1]) + segments.META_SUFFIX
    store.delete(half_uploaded)  # as if the shipper died between the data object and its sidecar

    host = DataPaths.from_root(tmp_path / "host")
    folders = store.folders(segments.SEALED_OBJECT_FOLDER)
    size = len(originals[names[0]])
    first = fetch_segments(store, host.sealed_segments, folders, lambda batch: {names[0]} & set(batch), size * 2)
    assert first.fetched == names[1:3] and first.deferred == 1, "registered skipped, budget kept, incomplete ignored"
    second = fetch_segments(store, host.sealed_segments, folders, lambda batch: set(), size * 2)
    assert second.fetched == [names[0], names[3]], "what is local is not fetched again"
    listed = segments.list_sealed_segments(host.sealed_segments)
    assert {s.name: s.path.read_bytes() for s in listed} == {n: originals[n] for n in names[:4]}
    assert all(s.load_meta().sha256 for s in listed)


def test_the_window_keeps_the_retained_date_folders_and_later_ones():
    folders = ["date=2026-11-20", "date=2026-11-24", "date=2026-11-25", "date=2026-11-30", "date=2026-12-01", "junk"]
    assert folders_in_window(folders, dt.date(2026, 11, 30), 6) == folders[2:5]
    assert folders_in_window(folders, dt.date(2026, 11, 30), 1) == folders[3:5]

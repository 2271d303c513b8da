"""Real sealed segments on disk for the operations tests (written and sealed by the segment writer itself)."""

from __future__ import annotations

from pathlib import Path

from harvest_pipeline import segments
from harvest_pipeline.paths import DataPaths

SECOND_NS = 10**9
DAY_NS = 86400 * SECOND_NS


def seal_segment(paths: DataPaths, opened_at_ns: int, sealed_at_ns: int, counter: int) -> str:
    """A real one-line sealed segment opened at ``opened_at_ns`` (its name and date folder follow), sealed at
    ``sealed_at_ns``; returns its name."""
    name = segments.segment_name(opened_at_ns, "test", "abcd", counter)
    open_dir = paths.open_segments / "test"
    open_dir.mkdir(parents=True, exist_ok=True)
    segment = segments.OpenSegment(open_dir, name, "test", opened_at_ns)
    segment.append([segments.encode_control(opened_at_ns, "c1", 1, "connect", url="ws://127.0.0.1:1")])
    segment.seal(paths.sealed_segments, sealed_at_ns=sealed_at_ns)
    return name


def data_file(paths: DataPaths, name: str) -> Path:
    """Where a sealed segment's data file is."""
    return segments.sealed_path(paths.sealed_segments, name)


def sidecar_file(paths: DataPaths, name: str) -> Path:
    """Where a sealed segment's sidecar is."""
    return segments.meta_path(data_file(paths, name))

"""Reading back what a collector sealed, checking every segment against its sidecar on the way."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from harvest_pipeline.collector.buffer import is_frame_loss
from harvest_pipeline.segments import iter_records, list_sealed_segments


def load_sealed_records(sealed_root: Path) -> list[dict[str, Any]]:
    """All records of all sealed segments in name order; asserts each segment matches its sidecar exactly."""
    records: list[dict[str, Any]] = []
    for segment in list_sealed_segments(sealed_root):
        meta = segment.load_meta()
        data = segment.path.read_bytes()
        assert data.endswith(b"\n"), f"{segment.name} ends with a torn line"
        assert hashlib.sha256(data).hexdigest() == meta.sha256, f"{segment.name} does not match its sidecar hash"
        assert data.count(b"\n") == meta.lines and len(data) == meta.bytes
        assert segment.path.parent.name == f"date={segment.name[0:4]}-{segment.name[4:6]}-{segment.name[6:8]}"
        for line_no, record in iter_records(segment.path):
            assert isinstance(record, dict), f"{segment.name}:{line_no} is not a valid record: {record}"
            records.append(record)
    return records


def frames_per_stream(records: list[dict[str, Any]]) -> Counter[str]:
    """How many frame and bad_frame records each stream has."""
    return Counter(r["s"] for r in records if r["k"] in ("frame", "bad_frame"))


def lost_per_stream(records: list[dict[str, Any]]) -> Counter[str]:
    """Frames each stream lost, from write_loss records (lost REST trades and control records are not frames)."""
    lost: Counter[str] = Counter()
    for record in records:
        if record["k"] == "write_loss" and is_frame_loss(record["reason"]):
            lost[record["s"]] += record["lines"]
    return lost

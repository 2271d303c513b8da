"""Finding sealed segments on disk (sensors, retention, status)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harvest_pipeline.segments.layout import (
    META_SUFFIX,
    SEALED_SUFFIX,
    SegmentMeta,
    meta_path,
    sealed_path,
)


@dataclass(frozen=True)
class SealedSegment:
    """A sealed segment on disk, as discovered by a sensor."""

    name: str
    path: Path

    @property
    def meta_path(self) -> Path:
        """Its sidecar."""
        return meta_path(self.path)

    def load_meta(self) -> SegmentMeta:
        """Read its sidecar."""
        return SegmentMeta.from_json(self.meta_path.read_bytes())


def list_sealed_segments(sealed_root: Path, since_date: str | None = None) -> list[SealedSegment]:
    """Sealed segments (data file and sidecar both present) sorted by name.

    ``since_date`` (``YYYY-MM-DD``) skips older date folders without listing them, so a sensor stays fast with a long
    history on disk. Names are not a cursor: a segment recovered after a crash can be sealed after younger ones.
    """
    if not sealed_root.exists():
        return []
    floor = f"date={since_date}" if since_date else ""
    found: list[SealedSegment] = []
    for day in os.scandir(sealed_root):
        if not day.is_dir() or not day.name.startswith("date=") or day.name < floor:
            continue
        names = {entry.name for entry in os.scandir(day.path)}
        for entry_name in names:
            if entry_name.endswith(SEALED_SUFFIX) and f"{entry_name}{META_SUFFIX}" in names:
                found.append(SealedSegment(entry_name.removesuffix(SEALED_SUFFIX), Path(day.path) / entry_name))
    found.sort(key=lambda segment: segment.name)
    return found


def find_sealed_segment(sealed_root: Path, name: str) -> SealedSegment:
    """Locate a sealed segment by name; raises ``FileNotFoundError`` naming the expected path."""
    path = sealed_path(sealed_root, name)
    if not path.exists() or not meta_path(path).exists():
        raise FileNotFoundError(f"sealed segment {name} not found at {path} (data file and .meta.json sidecar needed)")
    return SealedSegment(name, path)

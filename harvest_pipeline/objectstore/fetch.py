"""Bringing the collectors' segments from the bucket into the local ``sealed/`` folder of the host that compacts.

Compaction reads a segment from local disk, as on one machine: the Dagster host keeps a local copy of every segment
it has not compacted yet, and retention removes it afterwards as it removes any sealed segment. A segment counts in
the bucket once its sidecar is there (the shipper writes it last). Locally the sidecar is written first and the data
file appears by an atomic rename, so the local discovery (``segments.discovery``) never sees half a segment. What is
already local, or already registered with Dagster, is not fetched again.

Only date folders inside the retention window are looked at: a segment compacted and removed by retention is neither
local nor registered any more, and must not come back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harvest_pipeline.objectstore.store import ObjectStore
from harvest_pipeline.segments import META_SUFFIX, SEALED_OBJECT_FOLDER, SEALED_SUFFIX, meta_path, sealed_path

DATE_FOLDER_PREFIX = "date="
FETCH_BYTE_BUDGET = 512 * 1024 * 1024
"""Segment bytes downloaded per call at most (one sensor tick); the rest waits for the next call."""


@dataclass
class FetchResult:
    """What one call brought: segments fetched (names), their bytes, and complete segments left for later."""

    fetched: list[str] = field(default_factory=list)
    fetched_bytes: int = 0
    deferred: int = 0
    folders: list[str] = field(default_factory=list)


def folders_in_window(folders: Iterable[str], today: dt.date, window_days: int) -> list[str]:
    """The ``date=`` folders of the last ``window_days`` days up to ``today`` (later ones too: a clock ahead)."""
    first = today - dt.timedelta(days=max(window_days, 1) - 1)
    chosen = []
    for folder in folders:
        try:
            day = dt.date.fromisoformat(folder.removeprefix(DATE_FOLDER_PREFIX))
        except ValueError:
            continue
        if folder.startswith(DATE_FOLDER_PREFIX) and day >= first:
            chosen.append(folder)
    return sorted(chosen)


def fetch_segments(
    store: ObjectStore,
    sealed_root: Path,
    folders: Iterable[str],
    registered: Callable[[list[str]], set[str]],
    byte_budget: int = FETCH_BYTE_BUDGET,
) -> FetchResult:
    """Download the complete segments of the bucket's ``folders`` that are neither local nor ``registered``
    (given a list of names, the subset already known to Dagster), oldest first, within ``byte_budget`` (at least
    one segment per call). Raises ``OSError`` when the bucket fails; what was fetched before stays."""
    result = FetchResult(folders=list(folders))
    for folder in result.folders:
        objects = {info.name: info.size for info in store.list_objects(f"{SEALED_OBJECT_FOLDER}/{folder}")}
        complete = {
            name.rsplit("/", 1)[-1].removesuffix(SEALED_SUFFIX): (name, size)
            for name, size in objects.items()
            if name.endswith(SEALED_SUFFIX) and name + META_SUFFIX in objects
        }
        missing = [name for name in sorted(complete) if not sealed_path(sealed_root, name).exists()]
        known = registered(missing) if missing else set()
        for name in missing:
            if name in known:
                continue
            object_name, size = complete[name]
            if result.fetched and result.fetched_bytes + size > byte_budget:
                result.deferred += 1
                continue
            local = sealed_path(sealed_root, name)
            store.download(object_name + META_SUFFIX, meta_path(local))
            store.download(object_name, local)
            result.fetched.append(name)
            result.fetched_bytes += size
    return result

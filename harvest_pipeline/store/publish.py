"""Publishing the Parquet store to the installation's bucket, all or nothing per partition, without renames.

The compaction host keeps writing its store on local disk (staged files, renames, directory swaps: ``store.layout``).
Publishing mirrors each date x symbol x kind folder that changed since it was last published to
``<prefix>/parquet/market=<m>/date=<d>/symbol=<s>/kind=<k>/``:

1. every visible file is uploaded under a content-named object, ``<stem>.<sha256[:16]>.parquet`` (read back and
   verified), unless the folder's current manifest already lists that object: an object never changes once written;
2. then the folder's ``_manifest.json`` is replaced in one PUT, listing the objects a reader must read: the swap of
   a whole folder's contents (a consolidation replacing 1,440 parts by one day file) is that one PUT;
3. objects the new manifest no longer lists are *retired* in it, with the time, and deleted by a later pass once
   ``GRACE_S`` has passed, so a reader that fetched the previous manifest just before the swap can still read what
   it listed (objects an interrupted pass uploaded without a manifest are retired the same way).

Readers never list objects: they read the manifest (``read_manifest``). A folder with objects but no manifest yet is
invisible, exactly like a staged file on disk. What was published is remembered per folder in a local state file
(``publish-state.json`` beside the data), by the names, sizes and mtimes of its visible files, so an unchanged folder
costs one ``stat`` per file and no request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from harvest_pipeline.atomic_write import write_json_atomically
from harvest_pipeline.objectstore import ObjectStore, file_digest
from harvest_pipeline.store.layout import visible_files

PARQUET_OBJECT_FOLDER = "parquet"
MANIFEST = "_manifest.json"
MANIFEST_FORMAT = 1
GRACE_S = 3600.0
"""How long an object no manifest lists stays readable (a reader's query outlives the manifest it started from)."""
STATE_FILE = "publish-state.json"


@dataclass
class PublishResult:
    """One publication pass: folders published (changed), objects uploaded and deleted, folders unchanged."""

    published: list[str] = field(default_factory=list)
    uploaded: int = 0
    uploaded_bytes: int = 0
    deleted: int = 0
    unchanged: int = 0


def kind_folders(parquet_root: Path) -> Iterator[Path]:
    """Every ``market=/date=/symbol=/kind=`` folder of the store, in name order."""
    yield from sorted(p for p in parquet_root.glob("market=*/date=*/symbol=*/kind=*") if p.is_dir())


def folder_object_name(relative: str) -> str:
    """The bucket folder (relative to the installation's prefix) of a store folder relative to the Parquet root."""
    return f"{PARQUET_OBJECT_FOLDER}/{relative}"


def read_manifest(store: ObjectStore, folder: str) -> list[str] | None:
    """The object names (relative to the prefix) a reader reads in bucket ``folder``; None when unpublished."""
    manifest = _manifest(store, folder)
    if "published_at_ns" not in manifest:
        return None
    return [f"{folder}/{entry['object']}" for entry in manifest["files"]]


def _signature(files: list[Path]) -> list[list[object]]:
    signature: list[list[object]] = []
    for path in files:
        stat = path.stat()
        signature.append([path.name, stat.st_size, stat.st_mtime_ns])
    return signature


def _manifest(store: ObjectStore, folder: str) -> dict[str, Any]:
    """The folder's manifest; an empty one (no ``published_at_ns``) when it was never published."""
    try:
        manifest: dict[str, Any] = orjson.loads(store.read_bytes(f"{folder}/{MANIFEST}"))
    except FileNotFoundError:
        return {"format": MANIFEST_FORMAT, "files": [], "retired": []}
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{folder}/{MANIFEST}: manifest format {manifest.get('format')} is not {MANIFEST_FORMAT}")
    return manifest


def publish_folder(
    local: Path | None, folder: str, store: ObjectStore, grace_s: float = GRACE_S
) -> tuple[int, int, int, int | None]:
    """Publish one local kind folder as bucket ``folder`` (``local`` None: only collect retired objects). Returns
    the objects uploaded, their bytes, the objects deleted, and since when the oldest object still retired has been
    (ns; None when none is)."""
    previous = _manifest(store, folder)
    now = time.time_ns()
    listed_before = {entry["object"]: entry for entry in previous["files"]}
    entries, uploaded, uploaded_bytes = [], 0, 0
    if local is None:
        entries = list(previous["files"])
    else:
        for path in visible_files(local):
            size, sha256 = file_digest(path)
            name = f"{path.stem}.{sha256[:16]}.parquet"
            if name not in listed_before:
                store.put_verified(path, f"{folder}/{name}", size, sha256)
                uploaded, uploaded_bytes = uploaded + 1, uploaded_bytes + size
            entries.append({"object": name, "source": path.name, "bytes": size, "sha256": sha256})
    listed = {entry["object"] for entry in entries}
    retired = {entry["object"]: entry["since_ns"] for entry in previous.get("retired", [])}
    for name in listed_before.keys() - listed:
        retired.setdefault(name, now)
    for info in store.list_objects(folder):  # left by a pass that failed before its manifest: never readable
        name = info.name.rsplit("/", 1)[-1]
        if name.endswith(".parquet") and name not in listed:
            retired.setdefault(name, now)
    deleted = 0
    for name, since_ns in list(retired.items()):
        if name in listed:
            del retired[name]
        elif since_ns + int(grace_s * 1e9) <= now:
            store.delete(f"{folder}/{name}")
            del retired[name]
            deleted += 1
    manifest = {
        "format": MANIFEST_FORMAT,
        "published_at_ns": now,
        "files": entries,
        "retired": [{"object": name, "since_ns": since} for name, since in sorted(retired.items())],
    }
    store.put_bytes(f"{folder}/{MANIFEST}", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return uploaded, uploaded_bytes, deleted, min(retired.values()) if retired else None


def publish_store(parquet_root: Path, store: ObjectStore, state_path: Path, grace_s: float = GRACE_S) -> PublishResult:
    """Publish every kind folder of the local store that changed since the last pass (per ``state_path``), and
    delete the retired objects whose grace has passed. Raises ``OSError`` when the bucket fails; the folders
    published before stay recorded."""
    state: dict[str, dict[str, Any]] = {"folders": {}, "retired": {}}
    if state_path.exists():
        state = orjson.loads(state_path.read_bytes())
    folders, pending = state["folders"], state["retired"]
    result = PublishResult()
    now = time.time_ns()
    try:
        for local in kind_folders(parquet_root):
            relative = local.relative_to(parquet_root).as_posix()
            signature = _signature(visible_files(local))
            collect = relative in pending and pending[relative] + int(grace_s * 1e9) <= now
            if folders.get(relative) == signature and not collect:
                result.unchanged += 1
                continue
            changed = folders.get(relative) != signature
            uploaded, uploaded_bytes, deleted, retired_since = publish_folder(
                local if changed else None, folder_object_name(relative), store, grace_s
            )
            folders[relative] = signature
            if retired_since is None:
                pending.pop(relative, None)
            else:
                pending[relative] = retired_since
            if changed:
                result.published.append(relative)
            result.uploaded += uploaded
            result.uploaded_bytes += uploaded_bytes
            result.deleted += deleted
    finally:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(state_path, state)
    return result


def state_path_of(data_root: Path) -> Path:
    """Where a data root remembers what it published."""
    return data_root / STATE_FILE

"""Moving a store from before markets existed (``parquet/date=…``) into the USDⓈ-M root (``parquet/market=usdm/…``).

Until harvest recorded several markets, everything was USDⓈ-M and lived straight under the Parquet area. Every
Dagster entry point that reads or writes Parquet calls ``move_legacy_layout`` first (``HarvestStorage.parquet_root``),
as does ``harvest up`` before it starts anything, so an upgraded installation never shows a reader two places for
one day. The move is renames only (same filesystem: no copy, no rewrite), under an exclusive lock so concurrent
callers wait for one mover, and it can be interrupted anywhere and resumed:

- a ``date=D`` folder whose target does not exist yet moves whole (one ``rename``);
- otherwise (new-layout files were written for that day before the move ran) it is merged a level down: a
  ``symbol=`` or ``kind=`` folder missing at the target moves whole; inside a kind folder present at both, a part
  file the target lacks moves, a part file the target also has is the same segment compacted again (the target's is
  the newer) and the legacy copy is removed. A legacy day file is moved only into a kind folder without one: two day
  files would each claim their parts, so such a folder is left in place and reported (``conflicts``) for an operator
  to consolidate; nothing is deleted that has no copy at the target.

Emptied legacy folders are removed. Hidden folders (consolidation's staging) move with their day.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harvest_pipeline.markets import USDM
from harvest_pipeline.store.layout import DAY_FILE_PREFIX, PART_PREFIX

log = logging.getLogger(__name__)

LOCK_NAME = ".layout.lock"
LEGACY_PREFIX = "date="


@dataclass
class Migration:
    """What one ``move_legacy_layout`` call moved, removed as already present, and could not move."""

    moved: list[str] = field(default_factory=list)
    """Paths (relative to the Parquet area) moved into the USDⓈ-M root."""
    duplicates_removed: list[str] = field(default_factory=list)
    """Legacy part files whose segment the target already held."""
    conflicts: list[str] = field(default_factory=list)
    """Legacy kind folders left in place: both they and the target hold a day file."""


def has_legacy_layout(parquet: Path) -> bool:
    """Whether the Parquet area still holds ``date=`` folders at its top (one directory listing)."""
    try:
        with os.scandir(parquet) as entries:
            return any(entry.name.startswith(LEGACY_PREFIX) and entry.is_dir() for entry in entries)
    except FileNotFoundError:
        return False


def move_legacy_layout(parquet: Path) -> Migration:
    """Move every legacy ``date=`` folder of ``parquet`` into ``parquet/market=usdm/`` (see the module docstring).
    Costs one directory listing when there is nothing to move."""
    migration = Migration()
    if not has_legacy_layout(parquet):
        return migration
    target_root = USDM.parquet_root(parquet)
    with _exclusive(parquet):
        target_root.mkdir(parents=True, exist_ok=True)
        for day in sorted(p for p in parquet.iterdir() if p.name.startswith(LEGACY_PREFIX) and p.is_dir()):
            _merge(day, target_root / day.name, parquet, migration)
        _fsync_dir(target_root)
        _fsync_dir(parquet)
    if migration.moved or migration.duplicates_removed:
        log.warning(
            "moved %d legacy folder(s)/file(s) of %s into %s (USDⓈ-M), %d duplicate part(s) removed",
            len(migration.moved),
            parquet,
            target_root,
            len(migration.duplicates_removed),
        )
    for conflict in migration.conflicts:
        log.error("left %s in place: it and its USDⓈ-M target both hold a day file; consolidate by hand", conflict)
    return migration


def _merge(source: Path, target: Path, parquet: Path, migration: Migration) -> None:
    """Move ``source`` to ``target``; when ``target`` exists, merge their contents (folders recursively)."""
    if not target.exists():
        os.rename(source, target)
        migration.moved.append(str(target.relative_to(parquet)))
        return
    if source.name.startswith("kind="):
        _merge_kind(source, target, parquet, migration)
    else:
        for child in sorted(source.iterdir()):
            if child.is_dir():
                _merge(child, target / child.name, parquet, migration)
            elif not (target / child.name).exists():
                os.rename(child, target / child.name)
            elif child.name.startswith(".lock."):  # a partition lock: the target's serves from now on
                child.unlink()
        _fsync_dir(target)
    _remove_if_empty(source)


def _merge_kind(source: Path, target: Path, parquet: Path, migration: Migration) -> None:
    """Parts the target lacks move in; parts it has are dropped; a day file moves only where there is none."""
    target_has_day_file = any(p.name.startswith(DAY_FILE_PREFIX) for p in target.iterdir())
    for file in sorted(source.iterdir()):
        if file.name.startswith(DAY_FILE_PREFIX):
            if target_has_day_file:
                migration.conflicts.append(str(source.relative_to(parquet)))
                return
            os.rename(file, target / file.name)
            migration.moved.append(str((target / file.name).relative_to(parquet)))
    for file in sorted(source.iterdir()):
        if not file.name.startswith(PART_PREFIX):
            continue
        destination = target / file.name
        if destination.exists():
            file.unlink()
            migration.duplicates_removed.append(str(file.relative_to(parquet)))
        else:
            os.rename(file, destination)
            migration.moved.append(str(destination.relative_to(parquet)))
    for file in source.iterdir():
        if file.name.startswith(".") and file.is_file():  # debris of an interrupted write, never visible
            file.unlink()
    _fsync_dir(target)


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _exclusive(parquet: Path) -> Iterator[None]:
    fd = os.open(parquet / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

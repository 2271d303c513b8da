"""Finding sealed segments on disk (sensors, retention, status).

Sealed segments live in ``sealed/date=YYYY-MM-DD/`` folders named after the open time in their names. Neither names
nor folder dates are a cursor: a segment recovered after a crash is sealed late with an older name, and a collector
whose clock jumped seals into a folder days ahead of (or behind) every other one. What does tell that a folder
received something is its mtime: renaming a segment into a folder (or deleting one) changes it. A sensor therefore
stats every date folder (cheap, no listing) and lists only those whose mtime differs from what ``FolderCursor``
remembers: the cost of a tick follows what changed, not the history on disk.

A segment counts as sealed once its data file is in a date folder (the sidecar is written before that rename). A data
file whose sidecar is missing or unreadable is not silently dropped: ``check_sidecars`` reports it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harvest_pipeline.segments.layout import (
    META_SUFFIX,
    SEALED_SUFFIX,
    SegmentMeta,
    meta_path,
    sealed_path,
)

DATE_FOLDER_PREFIX = "date="
HOT_FOLDERS = 64
"""Date folders whose mtime a ``FolderCursor`` remembers exactly (the ones that changed most recently)."""
RACY_WINDOW_NS = 2 * 10**9
"""A folder whose mtime is this close to the moment it was stat'ed may change again within the same timestamp tick
(file systems stamp with a coarse clock), so it is listed again on the next tick instead of being trusted."""
MUST_LIST = -1
SIDECAR_MISSING = "sidecar missing"


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


@dataclass(frozen=True)
class SidecarProblem:
    """A sealed data file whose sidecar is missing or cannot be trusted; it is reported and left alone."""

    name: str
    path: Path
    reason: str

    def describe(self) -> str:
        """One line for logs and ``harvest status``."""
        return f"{self.name}: {self.reason} ({meta_path(self.path)})"


@dataclass
class SealedListing:
    """Sealed data files found in some date folders, by name: with a sidecar file, and without one."""

    segments: list[SealedSegment] = field(default_factory=list)
    without_sidecar: list[SealedSegment] = field(default_factory=list)

    def names(self) -> list[str]:
        """Every data file's segment name."""
        return [s.name for s in self.segments] + [s.name for s in self.without_sidecar]

    def only(self, names: set[str]) -> SealedListing:
        """The part of the listing whose names are in ``names``."""
        return SealedListing(
            [s for s in self.segments if s.name in names], [s for s in self.without_sidecar if s.name in names]
        )

    def merged(self, other: SealedListing) -> SealedListing:
        """Both listings, each name once, sorted by name."""
        known = set(self.names())
        return SealedListing(
            sorted([*self.segments, *(s for s in other.segments if s.name not in known)], key=_by_name),
            sorted([*self.without_sidecar, *(s for s in other.without_sidecar if s.name not in known)], key=_by_name),
        )


@dataclass
class SealedInventory:
    """Sealed segments with their sidecars read: the usable ones (by name) and the ones reported instead."""

    valid: list[tuple[SealedSegment, SegmentMeta]]
    problems: list[SidecarProblem]


def _by_name(segment: SealedSegment) -> str:
    return segment.name


def date_folder_mtimes(sealed_root: Path) -> dict[str, int]:
    """The mtime (ns) of every ``date=`` folder under ``sealed_root``: one ``stat`` each, nothing listed."""
    mtimes: dict[str, int] = {}
    if not sealed_root.is_dir():
        return mtimes
    for entry in os.scandir(sealed_root):
        if entry.name.startswith(DATE_FOLDER_PREFIX) and entry.is_dir(follow_symlinks=False):
            try:
                mtimes[entry.name] = entry.stat(follow_symlinks=False).st_mtime_ns
            except FileNotFoundError:
                continue
    return mtimes


def list_date_folder(folder: Path) -> SealedListing:
    """The sealed data files of one date folder (an absent folder has none)."""
    try:
        names = {entry.name for entry in os.scandir(folder)}
    except FileNotFoundError:
        return SealedListing()
    listing = SealedListing()
    for entry_name in names:
        if not entry_name.endswith(SEALED_SUFFIX):
            continue
        segment = SealedSegment(entry_name.removesuffix(SEALED_SUFFIX), folder / entry_name)
        has_sidecar = f"{entry_name}{META_SUFFIX}" in names
        (listing.segments if has_sidecar else listing.without_sidecar).append(segment)
    return listing


def scan_sealed_segments(sealed_root: Path, folders: Iterable[str] | None = None) -> SealedListing:
    """Sealed data files in ``folders`` (``date=`` folder names; default: every date folder), sorted by name."""
    chosen = sorted(date_folder_mtimes(sealed_root)) if folders is None else folders
    listing = SealedListing()
    for folder in chosen:
        found = list_date_folder(sealed_root / folder)
        listing.segments += found.segments
        listing.without_sidecar += found.without_sidecar
    listing.segments.sort(key=_by_name)
    listing.without_sidecar.sort(key=_by_name)
    return listing


def list_sealed_segments(sealed_root: Path) -> list[SealedSegment]:
    """Sealed segments (data file and sidecar both present) sorted by name."""
    return scan_sealed_segments(sealed_root).segments


def locate_sealed_segments(sealed_root: Path, names: Iterable[str]) -> SealedListing:
    """Where named segments are now (names whose data file is gone are left out)."""
    listing = SealedListing()
    for name in names:
        path = sealed_path(sealed_root, name)
        if path.exists():
            segment = SealedSegment(name, path)
            (listing.segments if segment.meta_path.exists() else listing.without_sidecar).append(segment)
    return listing


def find_sealed_segment(sealed_root: Path, name: str) -> SealedSegment:
    """Locate a sealed segment by name; raises ``FileNotFoundError`` naming the expected path."""
    path = sealed_path(sealed_root, name)
    if not path.exists() or not meta_path(path).exists():
        raise FileNotFoundError(f"sealed segment {name} not found at {path} (data file and .meta.json sidecar needed)")
    return SealedSegment(name, path)


def read_sidecar(segment: SealedSegment) -> SegmentMeta | SidecarProblem:
    """The segment's sidecar, or the reason it cannot be used (never raises for a bad sidecar)."""
    try:
        meta = segment.load_meta()
    except FileNotFoundError:
        return SidecarProblem(segment.name, segment.path, SIDECAR_MISSING)
    except OSError as exc:
        return SidecarProblem(segment.name, segment.path, f"sidecar unreadable: {exc.strerror or exc}")
    except (ValueError, TypeError) as exc:
        return SidecarProblem(segment.name, segment.path, f"sidecar corrupt: {exc}")
    if meta.name != segment.name:
        return SidecarProblem(segment.name, segment.path, f"sidecar describes another segment ({meta.name})")
    return meta


def check_sidecars(listing: SealedListing) -> SealedInventory:
    """Read every sidecar of a listing: usable segments with their metadata, and the problems (both by name)."""
    valid: list[tuple[SealedSegment, SegmentMeta]] = []
    problems = [SidecarProblem(s.name, s.path, SIDECAR_MISSING) for s in listing.without_sidecar]
    for segment in listing.segments:
        result = read_sidecar(segment)
        if isinstance(result, SidecarProblem):
            problems.append(result)
        else:
            valid.append((segment, result))
    problems.sort(key=lambda problem: problem.name)
    return SealedInventory(valid, problems)


def inventory_sealed_segments(sealed_root: Path) -> SealedInventory:
    """Every sealed segment under ``sealed_root`` with its sidecar checked (status and retention)."""
    return check_sidecars(scan_sealed_segments(sealed_root))


@dataclass(frozen=True)
class FolderCursor:
    """What a sensor remembers about the date folders, in bounded space, to list only those that changed.

    ``hot`` holds the exact mtime of the ``HOT_FOLDERS`` folders listed most recently (``MUST_LIST``: list again);
    ``cold`` holds, per month (``date=YYYY-MM``), one digest of the names and mtimes of that month's other folders.
    A change in a hot folder lists that folder; a change in a cold one lists the other folders of its month.
    """

    hot: dict[str, int]
    cold: dict[str, str]

    def to_dict(self) -> dict:
        """The JSON-ready form (a few kilobytes at most)."""
        return {"hot": self.hot, "cold": self.cold}

    @classmethod
    def from_dict(cls, data: dict) -> FolderCursor:
        """Parse ``to_dict`` output; raises ``KeyError``/``TypeError``/``ValueError`` on anything else."""
        hot = {str(name): int(mtime) for name, mtime in data["hot"].items()}
        return cls(hot, {str(month): str(digest) for month, digest in data["cold"].items()})


def _month(folder: str) -> str:
    return folder[: len(DATE_FOLDER_PREFIX) + 7]


def _month_digests(mtimes: dict[str, int]) -> dict[str, str]:
    by_month: dict[str, list[str]] = {}
    for folder in sorted(mtimes):
        by_month.setdefault(_month(folder), []).append(f"{folder}:{mtimes[folder]}")
    return {
        month: hashlib.blake2b("\n".join(rows).encode(), digest_size=8).hexdigest() for month, rows in by_month.items()
    }


def changed_folders(cursor: FolderCursor | None, mtimes: dict[str, int]) -> list[str]:
    """The date folders to list: every one without a cursor, else those that may have changed since it."""
    if cursor is None:
        return sorted(mtimes)
    changed = {folder for folder, mtime in mtimes.items() if folder in cursor.hot and cursor.hot[folder] != mtime}
    others = {folder: mtime for folder, mtime in mtimes.items() if folder not in cursor.hot}
    digests = _month_digests(others)
    stale_months = {m for m in digests.keys() | cursor.cold.keys() if digests.get(m) != cursor.cold.get(m)}
    changed.update(folder for folder in others if _month(folder) in stale_months)
    return sorted(changed)


def remember_folders(
    cursor: FolderCursor | None, mtimes: dict[str, int], listed: Iterable[str], stat_ns: int
) -> FolderCursor:
    """The cursor after listing ``listed``; ``mtimes`` were taken at ``stat_ns``, before the listing.

    Listed folders become hot (those whose mtime is within ``RACY_WINDOW_NS`` of ``stat_ns`` as ``MUST_LIST``, so a
    file renamed in during the same timestamp tick is not missed); the least recently listed hot folders beyond
    ``HOT_FOLDERS`` move into their month's digest.
    """
    fresh = {folder for folder in listed if folder in mtimes}
    racy = {folder for folder in fresh if abs(stat_ns - mtimes[folder]) < RACY_WINDOW_NS}
    settled = sorted(fresh - racy, key=lambda folder: mtimes[folder], reverse=True)
    earlier = [folder for folder in (cursor.hot if cursor else {}) if folder in mtimes and folder not in fresh]
    order = [*sorted(racy), *settled, *earlier][: max(HOT_FOLDERS, len(racy))]
    hot = {folder: MUST_LIST if folder in racy else mtimes[folder] for folder in order}
    return FolderCursor(hot, _month_digests({f: m for f, m in mtimes.items() if f not in hot}))

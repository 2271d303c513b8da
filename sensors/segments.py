"""``sealed_segments``: registers each new sealed segment as a partition and requests compaction, in batches.

Each tick stats every ``date=`` folder and lists only the folders whose mtime changed since the cursor (every folder
on the first tick or without a usable cursor; see ``harvest_pipeline.segments.discovery``). Neither segment names nor
folder dates are trusted as a cursor, so a segment sealed with a clock days ahead or behind, or recovered late with
an older name, is found like any other. "New" is the set difference between the listed segments and the registered
partitions, which keeps registration idempotent; a segment is requested only in the tick that registers it.

A data file whose sidecar is missing or unreadable is not registered (it would fail its whole batch): it is logged
once, named in every skip reason, and checked again each tick until it is repaired or removed.

A backlog becomes runs of up to ``MAX_SEGMENTS_PER_RUN`` segments each (a partition range run as one run), never
thousands of one-segment runs; in steady state each tick finds a segment or two and starts one small run. Failed
segments are requested again by ``compaction_retries``.

Dagster passes over its sensors every 5 s, which would leave a new segment waiting 2.5 s on average for its tick. A
collector seals on a clock (every ``segment_max_age_s``), so the cursor keeps each collector's newest seal time, and
a quiet tick during which a collector is due to seal again watches for that seal (two ``stat`` calls every 0.1 s, at
most ``WATCH_S``) and registers it as soon as it lands (docs/freshness.md). Discovery itself never relies on that
guess: a seal it misses is found by the next tick, as before.
"""

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import orjson

from assets.compaction import COMPACTION_JOB, SEGMENT_PARTITIONS
from assets.resources import HarvestStorage
from harvest_pipeline import segments
from harvest_pipeline.segments import discovery
from harvest_pipeline.status import SEGMENT_PARTITIONS_NAME
from sensors.bucket import bucket_segments
from sensors.compaction_retries import compaction_retries
from sensors.partition_ranges import batch_requests

SENSOR_INTERVAL_S = 1
"""Below the daemon's own pace on purpose, so the sensor ticks on every pass (every 5 s): an interval of 5 would skip
every other pass whenever a tick starts a little earlier in its pass than the last one did."""
MAX_TRACKED_INVALID = 100
"""Segments with a bad sidecar the cursor re-checks each tick; more are found again when their folder changes."""
MAX_NAMED = 5
WATCH_S = 4.0
"""The longest a quiet tick watches for an expected seal: less than the daemon's 5 s pass, so it never delays one."""
WATCH_GRACE_S = 1.0
"""How long after its due time a seal is still watched for (sealing takes a few fsyncs)."""
WATCH_POLL_S = 0.1
MAX_TRACKED_COLLECTORS = 8


@dataclass
class DiscoveryCursor:
    """The sensor's memory: date folder mtimes (bounded), the segments waiting for a valid sidecar, and the newest
    seal time of each collector (the most recent ``MAX_TRACKED_COLLECTORS``)."""

    folders: discovery.FolderCursor | None = None
    invalid: list[str] = field(default_factory=list)
    last_sealed_ns: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, cursor: str | None) -> "DiscoveryCursor":
        """The stored cursor; anything unreadable (or an older format) means "list every folder"."""
        try:
            data = orjson.loads(cursor) if cursor else {}
            return cls(
                discovery.FolderCursor.from_dict(data["folders"]),
                [str(n) for n in data.get("invalid", [])],
                {str(collector): int(ns) for collector, ns in data.get("last_sealed_ns", {}).items()},
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return cls()

    def dump(self) -> str:
        """The JSON cursor (a few kilobytes at most)."""
        folders = self.folders.to_dict() if self.folders else None
        return orjson.dumps(
            {"folders": folders, "invalid": self.invalid, "last_sealed_ns": self.last_sealed_ns}
        ).decode()

    def watch_seconds(self, interval_s: float, now_s: float) -> float:
        """How long a quiet tick at ``now_s`` watches for a seal: until the first collector due to seal within
        ``WATCH_S`` (its newest seal + ``interval_s``) is ``WATCH_GRACE_S`` late, at most ``WATCH_S``; else 0."""
        due = [ns / 1e9 + interval_s for ns in self.last_sealed_ns.values()]
        upcoming = [at for at in due if now_s - WATCH_GRACE_S < at <= now_s + WATCH_S]
        return min(min(upcoming) + WATCH_GRACE_S - now_s, WATCH_S) if upcoming else 0.0


def _newest_seals(known: dict[str, int], sealed: list[segments.SegmentMeta]) -> dict[str, int]:
    """``known`` with each collector's newest seal among ``sealed`` (the segments just registered) in place of its
    earlier one, so a clock that jumped and came back is followed; the most recent collectors only."""
    registered: dict[str, int] = {}
    for meta in sealed:
        registered[meta.collector_id] = max(registered.get(meta.collector_id, 0), meta.sealed_at_ns)
    newest = {**known, **registered}
    recent = sorted(newest.items(), key=lambda item: item[1], reverse=True)[:MAX_TRACKED_COLLECTORS]
    return dict(sorted(recent))


def _mtimes(paths: list[Path]) -> list[int]:
    stamps = []
    for path in paths:
        try:
            stamps.append(os.stat(path).st_mtime_ns)
        except FileNotFoundError:
            stamps.append(0)
    return stamps


def _wait_for_a_change(root: Path, folder_mtimes: dict[str, int], until: float) -> bool:
    """Poll the sealed root (a new date folder) and its most recently changed date folder (a new segment) until one
    changes (True) or ``time.monotonic()`` reaches ``until`` (False)."""
    newest = max(folder_mtimes, key=folder_mtimes.__getitem__, default=None)
    watched = [root, *([root / newest] if newest else [])]
    before = _mtimes(watched)
    while time.monotonic() < until:
        time.sleep(WATCH_POLL_S)
        if _mtimes(watched) != before:
            return True
    return False


def _named(problems: list[discovery.SidecarProblem]) -> str:
    shown = "; ".join(problem.describe() for problem in problems[:MAX_NAMED])
    return shown + (f"; and {len(problems) - MAX_NAMED} more" if len(problems) > MAX_NAMED else "")


@dg.sensor(
    job=COMPACTION_JOB,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers new sealed segments as partitions and requests batched compaction runs.",
)
def sealed_segments(context: dg.SensorEvaluationContext, storage: HarvestStorage) -> dg.SensorResult:
    """One tick: list the date folders that changed, register their unregistered segments, request runs for them.
    A quiet tick during which a collector is due to seal watches for that seal first (module docstring)."""
    settings = storage.settings()
    root = settings.paths().sealed_segments
    result, state, mtimes = _discover(context, root, DiscoveryCursor.parse(context.cursor))
    until = time.monotonic() + state.watch_seconds(settings.segment_max_age_s, time.time())
    while not result.run_requests and _wait_for_a_change(root, mtimes, until):
        result, state, mtimes = _discover(context, root, state)
    return result


def _discover(
    context: dg.SensorEvaluationContext, root: Path, state: DiscoveryCursor
) -> tuple[dg.SensorResult, DiscoveryCursor, dict[str, int]]:
    """The tick's result from ``state``, the cursor it stores, and the date folders' mtimes it saw."""
    stat_ns = time.time_ns()
    mtimes = discovery.date_folder_mtimes(root)
    folders = discovery.changed_folders(state.folders, mtimes)
    listing = discovery.scan_sealed_segments(root, folders).merged(
        discovery.locate_sealed_segments(root, state.invalid)
    )
    names = listing.names()
    registered = context.instance.get_existing_dynamic_partitions(SEGMENT_PARTITIONS_NAME, names) if names else set()
    inventory = discovery.check_sidecars(listing.only(set(names) - registered))
    new = [segment.name for segment, _ in inventory.valid]
    fresh_problems = [p for p in inventory.problems if p.name not in state.invalid]
    if fresh_problems:
        context.log.warning(
            f"{len(fresh_problems)} sealed segment(s) not registered for compaction, their sidecar is missing or "
            f"unreadable (restore or remove it): {_named(fresh_problems)}"
        )
    cursor = DiscoveryCursor(
        discovery.remember_folders(state.folders, mtimes, folders, stat_ns),
        [problem.name for problem in inventory.problems][:MAX_TRACKED_INVALID],
        _newest_seals(state.last_sealed_ns, [meta for _, meta in inventory.valid]),
    )
    listed = f"{len(folders)} of {len(mtimes)} date folder(s) listed"
    if not new:
        waiting = f"; without a valid sidecar: {_named(inventory.problems)}" if inventory.problems else ""
        skipped = dg.SensorResult(skip_reason=f"no new sealed segments ({listed}){waiting}", cursor=cursor.dump())
        return skipped, cursor, mtimes
    context.log.info(f"registering {len(new)} sealed segment(s) ({listed})")
    requested = dg.SensorResult(
        run_requests=batch_requests(new),
        dynamic_partitions_requests=[SEGMENT_PARTITIONS.build_add_request(new)],
        cursor=cursor.dump(),
    )
    return requested, cursor, mtimes


COMPACTION_SENSORS = [bucket_segments, sealed_segments, compaction_retries]

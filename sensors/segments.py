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
"""

import time
from dataclasses import dataclass, field

import dagster as dg
import orjson

from assets.compaction import COMPACTION_JOB, SEGMENT_PARTITIONS
from assets.resources import HarvestStorage
from harvest_pipeline.segments import discovery
from harvest_pipeline.status import SEGMENT_PARTITIONS_NAME
from sensors.compaction_retries import compaction_retries
from sensors.partition_ranges import batch_requests

SENSOR_INTERVAL_S = 10
MAX_TRACKED_INVALID = 100
"""Segments with a bad sidecar the cursor re-checks each tick; more are found again when their folder changes."""
MAX_NAMED = 5


@dataclass
class DiscoveryCursor:
    """The sensor's memory: date folder mtimes (bounded) and the segments waiting for a valid sidecar."""

    folders: discovery.FolderCursor | None = None
    invalid: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, cursor: str | None) -> "DiscoveryCursor":
        """The stored cursor; anything unreadable (or an older format) means "list every folder"."""
        try:
            data = orjson.loads(cursor) if cursor else {}
            return cls(discovery.FolderCursor.from_dict(data["folders"]), [str(n) for n in data.get("invalid", [])])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return cls()

    def dump(self) -> str:
        """The JSON cursor (a few kilobytes at most)."""
        folders = self.folders.to_dict() if self.folders else None
        return orjson.dumps({"folders": folders, "invalid": self.invalid}).decode()


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
    """One tick: list the date folders that changed, register their unregistered segments, request runs for them."""
    root = storage.paths().sealed_segments
    state = DiscoveryCursor.parse(context.cursor)
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
    ).dump()
    listed = f"{len(folders)} of {len(mtimes)} date folder(s) listed"
    if not new:
        waiting = f"; without a valid sidecar: {_named(inventory.problems)}" if inventory.problems else ""
        return dg.SensorResult(skip_reason=f"no new sealed segments ({listed}){waiting}", cursor=cursor)
    context.log.info(f"registering {len(new)} sealed segment(s) ({listed})")
    return dg.SensorResult(
        run_requests=batch_requests(new),
        dynamic_partitions_requests=[SEGMENT_PARTITIONS.build_add_request(new)],
        cursor=cursor,
    )


COMPACTION_SENSORS = [sealed_segments, compaction_retries]

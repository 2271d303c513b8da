"""``compaction_retries``: requests failed segment partitions again with capped exponential backoff, then gives up.

Dagster retries a failing step (``COMPACTION_RETRY``, transient I/O) and the run-retry daemon re-executes a failed
run once; after that a failed segment partition would never be requested again. This sensor requests each segment
whose latest compaction failed again after 1, 2, 4, 8 ... minutes (``restart_delay``, capped at ``RETRY_CAP_S``), at
most ``MAX_RETRIES`` times. Then it gives up and names the segment (warning in the sensor log, every skip reason,
``harvest status``); a fixed segment is re-executed by hand, and the sensor forgets a segment once it is compacted.

Segments that failed together are retried as ranges of consecutive partitions that shrink fourfold per attempt
(16, 4, then 1 segment per run with the default batch of 64): a transient failure of a whole batch recovers in a few
runs, and a poison segment is alone by the third retry, so it cannot keep failing its batch-mates.

The cursor keeps, per failing segment, the retries requested so far and the seconds still to wait, plus the time of
the tick. The time between two ticks counts as 0 .. ``RETRY_CAP_S``: a clock that jumps back never freezes retries,
one that jumps ahead brings them forward by one cap at most. A quiet tick costs two event-log queries: the
per-partition status is read only after a new run failure, while a segment is being retried, or every
``FULL_CHECK_S``.
"""

import os
from collections import defaultdict
from dataclasses import dataclass, field
from time import time_ns

import dagster as dg
import orjson

from assets.compaction import COMPACTION_JOB
from harvest_pipeline.status import SegmentProgress, segment_progress
from harvest_pipeline.supervisor import restart_delay
from sensors.partition_ranges import MAX_SEGMENTS_PER_RUN, batch_requests

RETRIES_ENV = "HARVEST_COMPACTION_RETRIES"
MAX_RETRIES = int(os.environ.get(RETRIES_ENV, "5"))
"""Retries of one segment before the sensor gives up on it (``HARVEST_COMPACTION_RETRIES``)."""
RETRY_BASE_S = 60.0
RETRY_CAP_S = 30 * 60.0
SHRINK_PER_ATTEMPT = 4
MAX_TRACKED = 1000
"""Failing segments remembered at once (the cursor stays below ~50 kB); more wait for a free slot."""
RETRY_INTERVAL_S = 30
FULL_CHECK_S = 600
"""Without a new run failure or a segment being retried, the per-partition status (its cost grows with the number
of registered segments, ~1 s at 100,000) is read only this often, to notice given-up segments fixed by hand."""
MAX_NAMED = 5


@dataclass(frozen=True)
class RetryState:
    """One failing segment: retries requested so far, seconds until the next one (None while the last requested
    retry has not failed yet), and whether the sensor gave up on it."""

    attempts: int
    wait_s: float | None
    gave_up: bool = False


@dataclass
class RetryPlan:
    """What one tick decides: the new per-segment state, the segments to request now by attempt number, and the
    segments given up in this tick."""

    tracked: dict[str, RetryState]
    due: dict[int, list[str]]
    gave_up_now: list[str]


def retry_delay_s(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): 60, 120, 240 ... capped at ``RETRY_CAP_S``."""
    return restart_delay(attempt, RETRY_BASE_S, RETRY_CAP_S)


def retry_batch_size(attempt: int) -> int:
    """Segments per run for retry number ``attempt``: a quarter of the previous attempt's, at least one."""
    return max(1, MAX_SEGMENTS_PER_RUN // SHRINK_PER_ATTEMPT**attempt)


def _next_state(state: RetryState | None, elapsed_s: float) -> RetryState:
    if state is None:
        return RetryState(0, retry_delay_s(1))
    if state.gave_up:
        return state
    if state.wait_s is None:
        if state.attempts >= MAX_RETRIES:
            return RetryState(state.attempts, None, gave_up=True)
        return RetryState(state.attempts, retry_delay_s(state.attempts + 1))
    return RetryState(state.attempts, state.wait_s - elapsed_s)


def plan_retries(
    tracked: dict[str, RetryState], failing: list[str], in_progress: set[str], elapsed_s: float
) -> RetryPlan:
    """Advance every failing segment's backoff by ``elapsed_s``; segments no longer failing are forgotten."""
    plan = RetryPlan({}, defaultdict(list), [])
    known_first = [name for name in failing if name in tracked] + [name for name in failing if name not in tracked]
    for name in known_first:
        if name not in tracked and len(plan.tracked) >= MAX_TRACKED:
            break
        state = _next_state(tracked.get(name), elapsed_s)
        if state.gave_up and not tracked[name].gave_up:
            plan.gave_up_now.append(name)
        if state.wait_s is not None and state.wait_s <= 0:
            state = RetryState(state.attempts + 1, None)
            plan.due[state.attempts].append(name)
        plan.tracked[name] = state
    plan.tracked.update({name: tracked[name] for name in in_progress if name in tracked})
    return plan


def retry_requests(due: dict[int, list[str]], progress: SegmentProgress) -> list[dg.RunRequest]:
    """Run requests for the due segments: ranges of consecutive partitions, sized by attempt."""
    requests = []
    for attempt, names in sorted(due.items()):
        run: list[str] = []
        for name in sorted(names, key=progress.positions.__getitem__):
            if run and progress.positions[name] != progress.positions[run[-1]] + 1:
                requests += batch_requests(run, retry_batch_size(attempt), f"retry{attempt}|")
                run = []
            run.append(name)
        requests += batch_requests(run, retry_batch_size(attempt), f"retry{attempt}|")
    return requests


@dataclass
class RetryCursor:
    """The sensor's memory: the last tick's time, the newest run failure seen, seconds since the per-partition
    status was last read, and the state of each failing segment."""

    tick_ns: int | None = None
    failure_id: int | None = None
    unchecked_s: float = 0.0
    tracked: dict[str, RetryState] = field(default_factory=dict)

    @classmethod
    def parse(cls, cursor: str | None) -> "RetryCursor":
        """The stored cursor (a missing or unreadable one starts afresh and reads the statuses at once)."""
        try:
            data = orjson.loads(cursor) if cursor else {}
            tracked = {name: RetryState(int(a), w, bool(g)) for name, (a, w, g) in data.get("segments", {}).items()}
            return cls(data.get("tick_ns"), data.get("failure_id"), float(data.get("unchecked_s", 0.0)), tracked)
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
            return cls()

    def dump(self) -> str:
        """``{"tick_ns", "failure_id", "unchecked_s", "segments": {name: [attempts, wait_s, gave_up]}}``."""
        segments = {name: [s.attempts, s.wait_s, s.gave_up] for name, s in sorted(self.tracked.items())}
        state = {"tick_ns": self.tick_ns, "failure_id": self.failure_id, "unchecked_s": self.unchecked_s}
        return orjson.dumps({**state, "segments": segments}).decode()

    def elapsed_s(self, now_ns: int) -> float:
        """Seconds since the last tick, counted as 0 .. ``RETRY_CAP_S`` whatever the clock did."""
        return min(max(0.0, (now_ns - self.tick_ns) / 1e9), RETRY_CAP_S) if self.tick_ns else 0.0


def newest_run_failure_id(instance: dg.DagsterInstance) -> int:
    """Storage id of the newest run failure or cancellation in the event log (0 if none): two indexed queries."""
    records = [
        record
        for event_type in (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED)
        for record in instance.fetch_run_status_changes(event_type, limit=1).records
    ]
    return max((record.storage_id for record in records), default=0)


def _named(names: list[str]) -> str:
    return ", ".join(names[:MAX_NAMED]) + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")


def _skip_reason(tracked: dict[str, RetryState]) -> str:
    gave_up = [name for name, state in tracked.items() if state.gave_up]
    given_up = f"; given up on {len(gave_up)}: {_named(gave_up)}" if gave_up else ""
    return f"{len(tracked) - len(gave_up)} failed segment(s) waiting for a retry{given_up}"


@dg.sensor(
    job=COMPACTION_JOB,
    minimum_interval_seconds=RETRY_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests failed segment partitions again after 1, 2, 4 ... minutes; gives up after "
    f"{MAX_RETRIES} retries and names the segment.",
)
def compaction_retries(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """One tick: advance each failing segment's backoff and request the ones that are due."""
    now_ns = time_ns()
    state = RetryCursor.parse(context.cursor)
    elapsed_s = state.elapsed_s(now_ns)
    failure_id = newest_run_failure_id(context.instance)
    retrying = any(not retry.gave_up for retry in state.tracked.values())
    if failure_id == state.failure_id and not retrying and state.unchecked_s + elapsed_s < FULL_CHECK_S:
        quiet = RetryCursor(now_ns, failure_id, state.unchecked_s + elapsed_s, state.tracked)
        return dg.SensorResult(skip_reason=_skip_reason(state.tracked), cursor=quiet.dump())
    progress = segment_progress(context.instance)
    plan = plan_retries(state.tracked, progress.failing, progress.in_progress, elapsed_s)
    for name in plan.gave_up_now:
        context.log.warning(
            f"giving up on segment {name} after {MAX_RETRIES} compaction retries; see its failed run, fix or "
            "remove the segment, then re-execute its partition"
        )
    cursor = RetryCursor(now_ns, failure_id, 0.0, plan.tracked).dump()
    requests = retry_requests(plan.due, progress)
    if not requests:
        return dg.SensorResult(skip_reason=_skip_reason(plan.tracked), cursor=cursor)
    due = [name for names in plan.due.values() for name in names]
    context.log.info(f"requesting compaction again for {len(due)} failed segment(s): {_named(due)}")
    return dg.SensorResult(run_requests=requests, cursor=cursor)

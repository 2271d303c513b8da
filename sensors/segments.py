"""``sealed_segments``: registers each new sealed segment as a partition and requests compaction, in batches.

Idempotent by construction: a segment is requested only in the tick that registers it, and "new" is the set
difference between sealed segments on disk and registered partitions (names are not a cursor: a segment recovered
after a crash is sealed late, with an older name). The cursor only bounds the listing to recent date folders.
A backlog becomes runs of up to ``MAX_SEGMENTS_PER_RUN`` segments each (a partition range run as one run), never
thousands of one-segment runs; in steady state each tick finds a segment or two and starts one small run.
"""

import datetime as dt
import os

import dagster as dg
import orjson
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.compaction import COMPACTION_JOB, SEGMENT_PARTITIONS
from assets.resources import HarvestStorage
from harvest_pipeline import segments

BATCH_ENV = "HARVEST_COMPACTION_BATCH"
MAX_SEGMENTS_PER_RUN = int(os.environ.get(BATCH_ENV, "64"))
"""Segments per run when behind; see docs/compaction.md for the measurement behind the default."""
LOOKBACK_DAYS = 2
"""Date folders older than the newest seen minus this are not listed again (a crash recovered later than that is
picked up by a backfill or by clearing the cursor)."""
SENSOR_INTERVAL_S = 10


def batch_requests(names: list[str], batch_size: int = MAX_SEGMENTS_PER_RUN) -> list[dg.RunRequest]:
    """One run request per consecutive batch of newly registered segment partitions (a partition range)."""
    requests = []
    for start in range(0, len(names), batch_size):
        batch = names[start : start + batch_size]
        requests.append(
            dg.RunRequest(
                run_key=f"{batch[0]}..{batch[-1]}",
                tags={ASSET_PARTITION_RANGE_START_TAG: batch[0], ASSET_PARTITION_RANGE_END_TAG: batch[-1]},
            )
        )
    return requests


def listing_floor(newest_date: str | None) -> str | None:
    """The oldest date folder the next tick lists."""
    if newest_date is None:
        return None
    return (dt.date.fromisoformat(newest_date) - dt.timedelta(days=LOOKBACK_DAYS)).isoformat()


@dg.sensor(
    job=COMPACTION_JOB,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers new sealed segments as partitions and requests batched compaction runs.",
)
def sealed_segments(context: dg.SensorEvaluationContext, storage: HarvestStorage) -> dg.SensorResult:
    """One tick: list recent sealed segments, register the unregistered ones, request runs for them."""
    since = orjson.loads(context.cursor)["since_date"] if context.cursor else None
    found = segments.list_sealed_segments(storage.paths().sealed_segments, since_date=since)
    newest = max((segments.segment_date(s.name) for s in found), default=None)
    cursor = orjson.dumps({"since_date": listing_floor(newest) or since}).decode()
    registered = set(context.instance.get_dynamic_partitions(SEGMENT_PARTITIONS.name))
    new = [s.name for s in found if s.name not in registered]
    if not new:
        return dg.SensorResult(skip_reason=f"no new sealed segments ({len(found)} listed)", cursor=cursor)
    context.log.info(f"registering {len(new)} sealed segment(s)")
    return dg.SensorResult(
        run_requests=batch_requests(new),
        dynamic_partitions_requests=[SEGMENT_PARTITIONS.build_add_request(new)],
        cursor=cursor,
    )


COMPACTION_SENSORS = [sealed_segments]

"""``bucket_segments``: with an object store configured, brings the collectors' segments from the bucket to this host.

Each tick lists the newest ``RECENT_FOLDERS`` date folders of ``<prefix>/segments/sealed/`` and, every
``SWEEP_INTERVAL_S``, every date folder inside the retention window (a collector that recovers a crashed segment seals
it late into an older folder); it downloads the complete segments (sidecar present) that are neither local nor
registered, within a byte budget (``harvest_pipeline.objectstore.fetch``). ``sealed_segments`` then finds them in the
local ``sealed/`` folder and requests their compaction as for any local segment. Without an object store the sensor
skips at once.
"""

import datetime as dt
import math
import time

import dagster as dg
import orjson

from assets.resources import HarvestStorage
from harvest_pipeline.objectstore import BucketLocation, ObjectStore, s3_filesystem
from harvest_pipeline.objectstore.fetch import fetch_segments, folders_in_window
from harvest_pipeline.retention import DAY_S, retention_seconds
from harvest_pipeline.segments import SEALED_OBJECT_FOLDER
from harvest_pipeline.status import SEGMENT_PARTITIONS_NAME

SENSOR_INTERVAL_S = 1
RECENT_FOLDERS = 2
SWEEP_INTERVAL_S = 600.0


@dg.sensor(
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="With an object store: downloads new sealed segments from the bucket for compaction on this host.",
)
def bucket_segments(context: dg.SensorEvaluationContext, storage: HarvestStorage) -> dg.SkipReason:
    """One tick: list the recent (or, when a sweep is due, every retained) date folder and fetch what is new."""
    settings = storage.settings()
    if not settings.object_store:
        return dg.SkipReason("no object store configured (HARVEST_OBJECT_STORE): segments are sealed locally")
    store = ObjectStore(BucketLocation.from_url(settings.object_store), s3_filesystem(settings.s3_endpoint))
    last_sweep = float(orjson.loads(context.cursor)["last_sweep_s"]) if context.cursor else 0.0
    now = time.time()
    window_days = max(1, math.floor(retention_seconds() / DAY_S) - 1)
    retained = folders_in_window(store.folders(SEALED_OBJECT_FOLDER), dt.datetime.now(dt.UTC).date(), window_days)
    sweep = now - last_sweep >= SWEEP_INTERVAL_S
    folders = retained if sweep else retained[-RECENT_FOLDERS:]

    def registered(names: list[str]) -> set[str]:
        return set(context.instance.get_existing_dynamic_partitions(SEGMENT_PARTITIONS_NAME, names))

    result = fetch_segments(store, settings.paths().sealed_segments, folders, registered)
    context.update_cursor(orjson.dumps({"last_sweep_s": now if sweep else last_sweep}).decode())
    scope = f"{len(folders)} of {len(retained)} date folder(s) in {store.location.url}"
    if result.fetched:
        context.log.info(f"fetched {len(result.fetched)} segment(s), {result.fetched_bytes / 1e6:.1f} MB ({scope})")
        later = f"; {result.deferred} left for the next tick" if result.deferred else ""
        return dg.SkipReason(f"fetched {len(result.fetched)} segment(s) for sealed_segments{later} ({scope})")
    return dg.SkipReason(f"nothing new in the bucket ({scope})")

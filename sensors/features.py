"""When features are built: a throttled refresh of today's features after new raw parts, and a nightly final build.

- ``features_refresh`` (sensor, every 3 min at most): for each symbol, if today's raw Parquet (prices, bookticker,
  events) changed since the last request, request ``features_1s`` for (today, symbol). The run key carries the newest
  file time, so a tick that sees nothing new requests nothing.
- ``features_nightly`` (schedule, 00:20 UTC): consolidate yesterday's raw kinds and build its final features, per
  symbol, once late segments have been compacted.
"""

import datetime as dt
import json
import os

import dagster as dg

from assets.consolidation import CONSOLIDATED_KINDS, configured_symbols, daily_asset_key
from assets.features import features_1s
from assets.resources import HarvestStorage
from harvest_pipeline.features.sources import newest_raw_change_ns

REFRESH_INTERVAL_S = int(os.environ.get("HARVEST_FEATURES_REFRESH_S", "180"))
"""Minimum seconds between refresh ticks (``HARVEST_FEATURES_REFRESH_S``; tests and demos use less)."""

features_refresh_job = dg.define_asset_job("features_refresh_job", selection=dg.AssetSelection.assets(features_1s))
features_final_job = dg.define_asset_job(
    "features_final_job",
    selection=dg.AssetSelection.assets(features_1s, *(daily_asset_key(kind) for kind in CONSOLIDATED_KINDS)),
)


def day_symbol_key(day: dt.date, symbol: str) -> dg.MultiPartitionKey:
    """The partition key of one UTC day x symbol."""
    return dg.MultiPartitionKey({"date": day.isoformat(), "symbol": symbol})


@dg.sensor(
    job=features_refresh_job,
    minimum_interval_seconds=REFRESH_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def features_refresh(context: dg.SensorEvaluationContext, storage: HarvestStorage) -> dg.SensorResult:
    """Request today's features for each symbol whose raw Parquet changed since the last request."""
    today = dt.datetime.now(dt.UTC).date()
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    requests = []
    for symbol in configured_symbols():
        changed = newest_raw_change_ns(storage.paths().parquet, today, symbol)
        marker = f"{today}|{changed}"
        if changed and seen.get(symbol) != marker:
            seen[symbol] = marker
            requests.append(dg.RunRequest(run_key=f"{symbol}|{marker}", partition_key=day_symbol_key(today, symbol)))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))


@dg.schedule(
    job=features_final_job,
    cron_schedule="20 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def features_nightly(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """Yesterday's consolidation and final features, one run per symbol."""
    yesterday = context.scheduled_execution_time.astimezone(dt.UTC).date() - dt.timedelta(days=1)
    return [
        dg.RunRequest(run_key=f"final|{yesterday}|{symbol}", partition_key=day_symbol_key(yesterday, symbol))
        for symbol in configured_symbols()
    ]


FEATURE_JOBS = [features_refresh_job, features_final_job]
FEATURE_SENSORS = [features_refresh]
FEATURE_SCHEDULES = [features_nightly]

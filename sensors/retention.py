"""Schedules of the retention jobs: segments hourly, run history daily (tick history: ``dagster.yaml`` retention)."""

import dagster as dg

from assets.retention import run_history_retention, segment_retention

segment_retention_schedule = dg.ScheduleDefinition(
    job=segment_retention,
    cron_schedule="17 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: delete compacted sealed segments past HARVEST_SEGMENT_RETENTION_DAYS (default 7) and their "
    "partitions.",
)

run_history_schedule = dg.ScheduleDefinition(
    job=run_history_retention,
    cron_schedule="43 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily: delete finished runs older than HARVEST_RUN_RETENTION_DAYS (default 30).",
)

RETENTION_SCHEDULES = [segment_retention_schedule, run_history_schedule]

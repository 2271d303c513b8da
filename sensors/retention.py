"""Hourly schedule of the ``segment_retention`` job."""

import dagster as dg

from assets.retention import segment_retention

segment_retention_schedule = dg.ScheduleDefinition(
    job=segment_retention,
    cron_schedule="17 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: delete compacted sealed segments past HARVEST_SEGMENT_RETENTION_DAYS (default 7).",
)

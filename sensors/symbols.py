"""``symbol_partitions``: registers the symbol partitions compaction does not register itself.

Compaction makes a symbol a partition once it writes the symbol's first market data (``assets/compaction.py``). This
sensor adds the others (``harvest_pipeline.symbol_partitions``):

- on every tick, the symbols the installation settings name explicitly (a selector such as ``top:5`` names none), so
  a configured symbol's days can be launched before its first segment is compacted;
- on its first tick and every ``RESCAN_S`` after, the symbols with Parquet on disk: an installation from before the
  symbols became dynamic keeps every partition and materialization its static list had, and data restored by hand
  gets its partitions. The first tick after an upgrade is the migration; it needs nothing else.

A quiet tick costs one read of the settings and one instance query; a scan lists the date folders' symbol folders.
"""

import time

import dagster as dg

from assets.resources import HarvestStorage
from harvest_pipeline.store.migration import move_legacy_layout
from harvest_pipeline.symbol_partitions import recorded_partitions, register_symbols

SENSOR_INTERVAL_S = 60
RESCAN_S = 3600
"""Seconds between two scans of the Parquet store for symbols."""


def scan_due(cursor: str | None, now_s: float) -> bool:
    """Whether the tick at ``now_s`` scans the disk: first tick, an unreadable cursor, ``RESCAN_S`` since the last
    scan, or a clock that went back."""
    try:
        last_scan_s = float(cursor) if cursor else None
    except ValueError:
        return True
    return last_scan_s is None or not 0 <= now_s - last_scan_s < RESCAN_S


@dg.sensor(
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers the symbols named in the settings, and (first tick, then hourly) those with Parquet on "
    "disk, as symbol partitions; compaction registers the symbols it records first by itself.",
)
def symbol_partitions(context: dg.SensorEvaluationContext, storage: HarvestStorage) -> dg.SensorResult:
    """One tick: register the explicitly configured symbols, and the recorded ones when a scan is due."""
    settings = storage.settings()
    now_s = time.time()
    candidates = [settings.exchange.partition_key(symbol) for symbol in settings.explicit_symbols]
    scanning = scan_due(context.cursor, now_s)
    if scanning:
        parquet = settings.paths().parquet
        move_legacy_layout(parquet)  # an installation from before markets existed: its Parquet moves first
        candidates += recorded_partitions(parquet)
    added = register_symbols(context.instance, candidates)
    cursor = str(now_s) if scanning else context.cursor
    where = "the settings and the Parquet store" if scanning else "the settings"
    if added:
        context.log.info(f"registered {len(added)} symbol partition(s) from {where}: {', '.join(added)}")
    found = f"registered {', '.join(added)}" if added else "no new symbol"
    return dg.SensorResult(skip_reason=f"{found} (looked at {where})", cursor=cursor)


SYMBOL_SENSORS = [symbol_partitions]

"""The Dagster instance harvest runs on: ``DAGSTER_HOME`` inside the data root, with a tuned ``dagster.yaml``.

Written once (never overwritten, so an operator's edits survive) by ``harvest up`` and by anything that needs the
instance. The template turns telemetry off, queues runs with a concurrency limit that fits a 2-core machine, keeps any
DuckDB-writing run alone (tag ``harvest/duckdb``), and bounds how much sensor/schedule tick history is kept.
"""

from __future__ import annotations

from pathlib import Path

from harvest_pipeline.atomic_write import write_bytes_atomically
from harvest_pipeline.paths import DataPaths

MAX_CONCURRENT_RUNS = 2
DUCKDB_TAG = "harvest/duckdb"

DAGSTER_YAML = f"""\
# harvest's Dagster instance (written by harvest; edit freely, it is not overwritten)
telemetry:
  enabled: false
nux:
  enabled: false
run_queue:
  max_concurrent_runs: {MAX_CONCURRENT_RUNS}
  tag_concurrency_limits:
    - key: "{DUCKDB_TAG}"
      limit: 1
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
run_retries:
  enabled: true
  max_retries: 1
retention:
  schedule:
    purge_after_days: 30
  sensor:
    purge_after_days:
      skipped: 1
      failure: 30
      success: 7
"""

WORKSPACE_YAML = """\
load_from:
  - python_module:
      module_name: harvest_pipeline.definitions
"""


def ensure_dagster_home(paths: DataPaths) -> Path:
    """Create ``DAGSTER_HOME`` with ``dagster.yaml``, ``workspace.yaml`` and initialised storage; return the workspace.

    Storage is created here, in one process, because the webserver and the daemon racing to create the same SQLite
    databases can leave two migration heads behind and an instance neither can open.
    """
    home = paths.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    for name, text in (("dagster.yaml", DAGSTER_YAML), ("workspace.yaml", WORKSPACE_YAML)):
        target = home / name
        if not target.exists():
            write_bytes_atomically(target, text.encode())
    initialise_storage(home)
    return home / "workspace.yaml"


def initialise_storage(home: Path) -> None:
    """Open the instance once so its run, event-log and schedule databases exist and are migrated."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
        instance.get_dynamic_partitions("harvest_init")
        instance.all_instigator_state()


ORPHANED_RUN_MESSAGE = "harvest up restarted: the process running this run ended with the previous daemon"


def fail_orphaned_runs(home: Path) -> list[str]:
    """Mark runs that an earlier daemon of this installation left starting or started as failed; returns their ids.

    Call it only before this installation's daemon starts. Those runs' processes died with the previous daemon (a
    crash, a kill -9, a power cut); left alone, Dagster would show them in progress forever and nothing would retry
    their partitions. Failed, they are retried like any failed run (run retries, the compaction retry sensor).
    """
    import dagster as dg

    statuses = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        orphans = instance.get_runs(filters=dg.RunsFilter(statuses=statuses))
        for orphan in orphans:
            instance.report_run_failed(orphan, message=ORPHANED_RUN_MESSAGE)
    return [orphan.run_id for orphan in orphans]

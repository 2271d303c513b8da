"""The Dagster instance harvest runs on: ``DAGSTER_HOME`` inside the data root, with a tuned ``dagster.yaml``.

Written once (never overwritten, so an operator's edits survive) by ``harvest up`` and by anything that needs the
instance. The template turns telemetry off, runs at most ``MAX_CONCURRENT_RUNS`` runs at once (a 2-core machine),
lets one step of the DuckDB-heavy pool ``DUCKDB_POOL`` run at a time, launches queued runs every
``DEQUEUE_INTERVAL_S`` (docs/freshness.md), and bounds how much sensor/schedule tick history is kept. Storage is SQLite
under ``DAGSTER_HOME`` unless a PostgreSQL URL is given (docs/postgres.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from harvest_pipeline.atomic_write import write_bytes_atomically
from harvest_pipeline.paths import DataPaths

MAX_CONCURRENT_RUNS = 2
DUCKDB_POOL = "harvest_duckdb"
"""The Dagster concurrency pool of the DuckDB-heavy assets (daily consolidation, features_1s): one step at a time."""
DUCKDB_POOL_LIMIT = 1
DEQUEUE_INTERVAL_S = 1
"""How often the daemon launches queued runs (whole seconds). Dagster's default of 5 s adds 2.5 s on average before
every run starts, as long as a segment now takes from seal to Parquet (docs/freshness.md); a pass is a few queries."""
POSTGRES_DRIVER = "postgresql+psycopg2"
"""The one supported URL scheme: a plain ``postgresql://`` picks psycopg 3 under SQLAlchemy 2.1, which breaks Dagster's
run queue (``syntax error at or near "$1"``)."""

_TEMPLATE = """\
# harvest's Dagster instance (written by harvest; edit freely, it is not overwritten)
telemetry:
  enabled: false
nux:
  enabled: false
{storage}concurrency:
  runs:
    max_concurrent_runs: {max_runs}
  pools:
    # every pool without a limit set in the UI gets this one; harvest's only pool is "{pool}" (DuckDB-heavy assets)
    default_limit: {pool_limit}
    granularity: op
run_queue:
  # launch queued runs within a second (Dagster's default: every 5 s), in threads, so one run worker starting up
  # does not hold back the next dequeue
  dequeue_interval_seconds: {dequeue_s}
  dequeue_use_threads: true
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
      started: 7
"""

WORKSPACE_YAML = """\
load_from:
  - python_module:
      module_name: harvest_pipeline.definitions
"""


def validate_storage_url(storage_url: str) -> URL:
    """The parsed PostgreSQL URL, or a ValueError saying which form to use (the password is never echoed)."""
    try:
        url = make_url(storage_url)
    except ArgumentError:
        raise ValueError(
            f"Dagster storage URL is not a URL; use {POSTGRES_DRIVER}://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    shown = url.render_as_string(hide_password=True)
    if url.drivername != POSTGRES_DRIVER:
        hint = url.set(drivername=POSTGRES_DRIVER).render_as_string(hide_password=True)
        raise ValueError(
            f"Dagster storage URL {shown}: scheme {url.drivername!r} is not supported; use {POSTGRES_DRIVER}:// "
            f"(here: {hint}). A plain postgresql:// selects psycopg 3, with which Dagster's run queue fails."
        )
    if not url.database:
        raise ValueError(f"Dagster storage URL {shown} names no database; use {POSTGRES_DRIVER}://USER@HOST:PORT/DB")
    return url


def dagster_yaml(storage_url: str | None = None) -> str:
    """The generated ``dagster.yaml``: SQLite under ``DAGSTER_HOME``, or every storage on PostgreSQL at the URL."""
    storage = ""
    if storage_url is not None:
        validate_storage_url(storage_url)
        storage = f"storage:\n  postgres:\n    postgres_url: {json.dumps(storage_url)}\n"
    return _TEMPLATE.format(
        storage=storage,
        max_runs=MAX_CONCURRENT_RUNS,
        pool=DUCKDB_POOL,
        pool_limit=DUCKDB_POOL_LIMIT,
        dequeue_s=DEQUEUE_INTERVAL_S,
    )


def ensure_dagster_home(paths: DataPaths, storage_url: str | None = None) -> Path:
    """Create ``DAGSTER_HOME`` with ``dagster.yaml``, ``workspace.yaml`` and initialised storage; return the workspace.

    With ``storage_url`` (``postgresql+psycopg2://...``) a new ``dagster.yaml`` keeps runs, event logs and schedules
    on PostgreSQL; an existing one is never rewritten, and one whose storage is elsewhere raises a ValueError naming
    what to edit. Storage is created here, in one process, because the webserver and the daemon racing to create the
    same databases can leave two migration heads behind and an instance neither can open.
    """
    home = paths.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if config.exists():
        if storage_url is not None:
            check_configured_storage(config, validate_storage_url(storage_url))
    else:
        write_bytes_atomically(config, dagster_yaml(storage_url).encode())
        if storage_url is not None and make_url(storage_url).password:
            config.chmod(0o600)  # the URL's password is in the file: readable by its owner only
    workspace = home / "workspace.yaml"
    if not workspace.exists():
        write_bytes_atomically(workspace, WORKSPACE_YAML.encode())
    try:
        initialise_storage(home)
    except Exception as exc:
        raise RuntimeError(
            f"cannot open the Dagster instance in {home}: {_root_cause(exc)}. Check the storage block of {config} "
            "(a PostgreSQL password goes in the URL, PGPASSWORD or ~/.pgpass: docs/postgres.md)"
        ) from exc
    return workspace


def _root_cause(exc: BaseException) -> str:
    """The innermost cause's message (Dagster's own is a bare "too many retries for DB connection")."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_configured_storage(config: Path, wanted: URL) -> None:
    """Raise unless ``config`` already keeps Dagster's storage in the PostgreSQL database ``wanted`` names."""
    current = configured_postgres(config)
    if current is not None and _same_database(current, wanted):
        return
    where = "not on PostgreSQL" if current is None else f"on {current.render_as_string(hide_password=True)}"
    shown = wanted.render_as_string(hide_password=True)
    raise ValueError(
        f"{config} already exists and keeps Dagster's storage {where}, not on {shown}. harvest never rewrites that "
        f'file: replace its storage block with\nstorage:\n  postgres:\n    postgres_url: "{shown}"\n(your password '
        "in place of ***, or none: docs/postgres.md), or move the file away to have harvest write a new one; runs "
        "recorded in the old storage stay there."
    )


def configured_postgres(config: Path) -> URL | None:
    """The PostgreSQL database a ``dagster.yaml`` keeps its storage in; None when it is not PostgreSQL (SQLite by
    default). Raises ValueError for a PostgreSQL block whose settings cannot be read."""
    storage = (yaml.safe_load(config.read_text()) or {}).get("storage")
    postgres = storage.get("postgres") if isinstance(storage, dict) else None
    if not isinstance(postgres, dict):
        return None
    try:
        if postgres.get("postgres_url"):
            return make_url(_resolve(postgres["postgres_url"]))
        db = {key: _resolve(value) for key, value in postgres["postgres_db"].items() if key != "password"}
        return URL.create(
            db.get("scheme", "postgresql"),
            username=db["username"],
            host=db["hostname"],
            port=int(db.get("port", 5432)),
            database=db["db_name"],
            query=db.get("params") or {},
        )
    except (KeyError, TypeError, AttributeError, ValueError, ArgumentError) as exc:
        raise ValueError(f"{config}: cannot read its PostgreSQL storage settings ({exc!r})") from None


def _resolve(value: Any) -> Any:
    """A config value as Dagster reads it: ``{env: NAME}`` is the environment variable NAME."""
    if isinstance(value, dict) and set(value) == {"env"}:
        if value["env"] not in os.environ:
            raise ValueError(f"environment variable {value['env']} is not set")
        return os.environ[value["env"]]
    return value


def _same_database(a: URL, b: URL) -> bool:
    """Whether two URLs name the same database the same way (the password does not count)."""
    return (a.drivername, a.username, a.host, a.port or 5432, a.database, dict(a.query)) == (
        b.drivername,
        b.username,
        b.host,
        b.port or 5432,
        b.database,
        dict(b.query),
    )


def initialise_storage(home: Path) -> None:
    """Open the instance once so its run, event-log and schedule storage exists and is migrated (SQLite or
    PostgreSQL alike), and create the DuckDB pool's limit.

    Dagster creates a pool's limit row lazily, when a step first claims a slot. Two run processes claiming at the
    same moment both insert it, and on PostgreSQL the loser's step fails on the unique key. Created here, before any
    run exists, it is only ever read. It is created only when absent: on PostgreSQL, Dagster's initialisation of an
    existing row aborts its own transaction. An instance whose ``dagster.yaml`` sets no default pool limit is left as
    it is.
    """
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
        instance.get_dynamic_partitions("harvest_init")
        instance.all_instigator_state()
        if DUCKDB_POOL not in instance.event_log_storage.get_concurrency_keys():
            instance.event_log_storage.initialize_concurrency_limit_to_default(DUCKDB_POOL)


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

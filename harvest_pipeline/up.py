"""``harvest up``: the whole pipeline in one supervised process tree; ``harvest dagster``: one Dagster process alone.

Children: the simulator (offline), the Dagster webserver, the Dagster daemon (sensors, schedules, run queue) and the
collector. All share one data root and one Dagster instance under it, and one settings file: ``up`` resolves the
installation settings once (flags > ``HARVEST_*`` > ``HARVEST_SETTINGS_FILE`` > defaults), writes them to
``<data root>/harvest-settings.json`` and hands each child only that file's path and ``DAGSTER_HOME``. The source is
never chosen silently: the banner says whether data comes from Binance or from the built-in simulator, and why.

In production each process runs under its own systemd unit (``deploy/systemd``): ``harvest collect``,
``harvest dagster daemon`` and ``harvest dagster webserver`` (after a one-shot ``harvest dagster init``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import socket
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import orjson

from harvest_pipeline.atomic_write import write_json_atomically
from harvest_pipeline.dagster_home import ensure_dagster_home, fail_orphaned_runs
from harvest_pipeline.markets import MARKETS
from harvest_pipeline.paths import DAGSTER_HOME_ENV, DataPaths
from harvest_pipeline.settings import (
    RESOLVED_SETTINGS_FILE,
    SETTINGS_ENV_NAMES,
    SETTINGS_FILE_ENV,
    InstallationSettings,
    is_loopback,
    load_settings,
)
from harvest_pipeline.store.migration import move_legacy_layout
from harvest_pipeline.supervisor import LOG_BACKUPS, LOG_MAX_BYTES, ChildSpec, Supervisor

log = logging.getLogger(__name__)

UP_STATE_FILE = "up-state.json"
SIMULATOR_READY_FILE = "simulator-ready.json"
DAGSTER_ROLES = ("webserver", "daemon")


@dataclass(frozen=True)
class UpPlan:
    """What ``harvest up`` will start, resolved from flags before anything runs."""

    settings: InstallationSettings
    settings_file: Path
    paths: DataPaths
    source: str
    source_reason: str
    ui_url: str
    metrics_url: str
    children: list[ChildSpec]

    @property
    def ws_base(self) -> str:
        """The websocket base the collector records from."""
        return self.settings.ws_base


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``up`` and ``dagster`` subcommands."""
    parser = subparsers.add_parser(
        "up",
        help="run collector + Dagster daemon + Dagster UI (+ simulator offline) under one supervisor",
        description="Start the whole harvest pipeline. Without --simulate/--live it uses Binance when reachable and "
        "the built-in simulator otherwise, and says which. Unset flags come from HARVEST_* variables, then the "
        "settings file ($HARVEST_SETTINGS_FILE), then the defaults (harvest_pipeline/settings.py).",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--simulate", action="store_true", help="feed the pipeline from the built-in simulator")
    source.add_argument(
        "--live",
        action="store_true",
        help="record from the exchange even if unreachable now (the collector retries with backoff)",
    )
    parser.add_argument("--data", dest="data_root", help="data root (HARVEST_DATA_ROOT; default ./data)")
    parser.add_argument(
        "--market",
        choices=sorted(MARKETS),
        help="Binance market to record: usdm (USDⓈ-M futures), coinm (COIN-M futures) or spot (HARVEST_MARKET; "
        "default usdm); the simulator serves the same one",
    )
    parser.add_argument(
        "--symbols",
        help="comma-separated symbols and/or selectors: top:N (the N busiest contracts by 24 h quote volume), all "
        "(every trading contract), e.g. BTCUSDT,top:5, resolved again every HARVEST_SYMBOLS_REFRESH_S (default 3600) "
        "(HARVEST_SYMBOLS; default BTCUSDT)",
    )
    parser.add_argument("--ui-host", help="Dagster UI address (HARVEST_UI_HOST; default 127.0.0.1)")
    parser.add_argument("--ui-port", type=int, help="Dagster UI port (HARVEST_UI_PORT; default 3000)")
    parser.add_argument(
        "--ui-allow-remote",
        action="store_true",
        default=None,
        help="allow a non-loopback --ui-host (the UI has NO authentication; prefer the reverse proxy in deploy/nginx)",
    )
    parser.add_argument("--metrics-port", type=int, help="collector metrics port (HARVEST_METRICS_PORT; default 9108)")
    parser.add_argument("--segment-seconds", dest="segment_max_age_s", type=float, help="seal segments after this "
                        "many seconds (HARVEST_SEGMENT_MAX_AGE_S; default 60)")  # fmt: skip
    parser.add_argument(
        "--dagster-storage",
        help="keep Dagster's runs, event logs and schedules in PostgreSQL at this URL "
        "(postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB; HARVEST_DAGSTER_STORAGE; default SQLite in DAGSTER_HOME)",
    )
    parser.add_argument("--simulator-port", type=int, default=0, help="simulator port (default: a free port)")
    parser.add_argument("--simulator-rate", type=float, default=1.0, help="simulator activity multiplier")
    parser.add_argument("--max-restarts", type=int, default=5, help="crashes of one child in 5 min before giving up")
    parser.set_defaults(run=run)

    dagster = subparsers.add_parser(
        "dagster",
        help="prepare the Dagster instance, or run the Dagster webserver or daemon alone (systemd units)",
        description="init: create the data root and DAGSTER_HOME (dagster.yaml, workspace, storage). webserver/daemon: "
        "replace this process with dagster-webserver/dagster-daemon configured from the installation settings.",
    )
    dagster.add_argument("role", choices=("init", *DAGSTER_ROLES))
    dagster.set_defaults(run=run_dagster)


SETTINGS_FLAGS = ("data_root", "market", "symbols", "ui_host", "ui_port", "ui_allow_remote", "metrics_port",
                  "segment_max_age_s", "dagster_storage")  # fmt: skip
"""The ``up`` flags that are installation settings (``harvest_pipeline.settings``)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def exchange_reachable(rest_base: str, timeout_s: float = 3.0) -> tuple[bool, str]:
    """Whether a TCP connection to the exchange's REST host succeeds, with a human reason."""
    url = urllib.parse.urlsplit(rest_base)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True, f"{host}:{port} is reachable"
    except OSError as exc:
        return False, f"{host}:{port} is not reachable ({exc.strerror or exc})"


def dagster_argv(role: str, settings: InstallationSettings, workspace: Path) -> list[str]:
    """The command line of the Dagster webserver or daemon of this installation (``up`` and the systemd units)."""
    bin_dir = Path(sys.executable).parent
    if role == "webserver":
        ui = ["-h", settings.ui_host, "-p", str(settings.ui_port)]
        return [str(bin_dir / "dagster-webserver"), *ui, "-w", str(workspace)]
    return [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)]


def child_environment(settings_file: Path, paths: DataPaths) -> dict[str, str | None]:
    """What every child sees on top of ``up``'s environment: the settings file, ``DAGSTER_HOME``, and no per-setting
    ``HARVEST_*`` variable (``up`` already resolved them into the file; a stale one would win over it)."""
    return {
        **dict.fromkeys(SETTINGS_ENV_NAMES),
        SETTINGS_FILE_ENV: str(settings_file),
        DAGSTER_HOME_ENV: str(paths.dagster_home),
    }


def plan_up(args: argparse.Namespace) -> UpPlan:
    """Resolve the settings, the data source, the paths and the child processes from the command-line flags."""
    settings = load_settings({name: getattr(args, name) for name in SETTINGS_FLAGS})
    if args.simulate:
        simulate, reason = True, "--simulate was given"
    elif args.live:
        simulate, reason = False, "--live was given"
    else:
        reachable, why = exchange_reachable(settings.rest_base)
        simulate, reason = not reachable, why
    simulator_port = (args.simulator_port or free_port()) if simulate else 0
    if simulate:
        base = f"127.0.0.1:{simulator_port}"
        settings = dataclasses.replace(settings, ws_base=f"ws://{base}", rest_base=f"http://{base}")
    paths = settings.paths()
    paths.root.mkdir(parents=True, exist_ok=True)
    workspace = ensure_dagster_home(paths, storage_url=settings.dagster_storage)
    settings_file = paths.root / RESOLVED_SETTINGS_FILE
    settings.write(settings_file)
    env = child_environment(settings_file, paths)
    logs = paths.root / "logs"
    children: list[ChildSpec] = []
    if simulate:
        simulator = ["simulate", "--market", settings.market, "--port", str(simulator_port),
                     *simulator_symbols(settings), "--rate", str(args.simulator_rate),
                     "--ready-file", str(paths.root / SIMULATOR_READY_FILE),
                     "--accounting-file", str(paths.root / "simulator-accounting.json")]  # fmt: skip
        children.append(ChildSpec("simulator", harvest_argv(*simulator), env, logs / "simulator.log"))
    for role in DAGSTER_ROLES:
        children.append(ChildSpec(f"dagster-{role}", dagster_argv(role, settings, workspace), env,
                                  logs / f"dagster-{role}.log"))  # fmt: skip
    children.append(ChildSpec("collector", harvest_argv("collect"), env, logs / "collector.log", stop_timeout_s=30.0))
    return UpPlan(
        settings=settings,
        settings_file=settings_file,
        paths=paths,
        source="simulator" if simulate else "exchange",
        source_reason=reason,
        ui_url=f"http://{settings.ui_host}:{settings.ui_port}",
        metrics_url=f"http://{settings.metrics_host}:{settings.metrics_port}/metrics",
        children=children,
    )


def simulator_symbols(settings: InstallationSettings) -> list[str]:
    """The simulator's ``--symbols`` arguments: the explicit symbols when that is all the selection names; with a
    selector (``top:5``, ``all``) the simulator's default instruments for the collector to choose from, plus the
    explicit symbols beside the selector."""
    selection = settings.symbol_selection
    if not selection.has_selectors:
        return ["--symbols", ",".join(selection.explicit)]
    if not selection.explicit:
        return []
    from harvest_pipeline.simulator.instruments import default_symbols  # the simulator's package: only when simulating

    return ["--symbols", ",".join(dict.fromkeys([*default_symbols(settings.market), *selection.explicit]))]


def harvest_argv(*args: str) -> list[str]:
    """``python -m harvest_pipeline.cli ARGS`` with this interpreter."""
    return [sys.executable, "-m", "harvest_pipeline.cli", *args]


def banner(plan: UpPlan) -> str:
    """The lines printed at start: source (and why), UI, metrics, data and logs."""
    if plan.source == "simulator":
        source = f"SOURCE: built-in simulator at {plan.ws_base} ({plan.source_reason}); use --live to record Binance"
    else:
        source = f"SOURCE: exchange {plan.ws_base} ({plan.source_reason})"
    source += f"\n  MARKET: {plan.settings.exchange.title} ({plan.settings.market})"
    return "\n".join(
        [
            "harvest up",
            f"  {source}",
            f"  Dagster UI:  {plan.ui_url}{_remote_warning(plan.settings)}",
            f"  metrics:     {plan.metrics_url}   health: {plan.metrics_url.removesuffix('/metrics')}/healthz",
            f"  data:        {plan.paths.root}",
            f"  settings:    {plan.settings_file}",
            f"  logs:        {plan.paths.root / 'logs'} (rotated at {LOG_MAX_BYTES // 2**20} MiB, {LOG_BACKUPS} kept)",
            "  stop with Ctrl-C (the collector seals its open segment first)",
        ]
    )


def _remote_warning(settings: InstallationSettings) -> str:
    if is_loopback(settings.ui_host):
        return ""
    return "   WARNING: reachable from the network WITHOUT authentication (see docs/deployment.md)"


def write_up_state(path: Path, plan: UpPlan, supervisor: Supervisor) -> None:
    """Record the children's pids and restart counts (read by ``harvest status`` and the end-to-end test)."""
    state = {
        "pid": os.getpid(),
        "source": plan.source,
        "ws_base": plan.ws_base,
        "ui_url": plan.ui_url,
        "metrics_url": plan.metrics_url,
        "children": {
            name: {
                "pid": child.pid,
                "starts": child.starts,
                "restarts": child.restarts,
                "last_exit": child.last_exit_code,
            }
            for name, child in supervisor.children.items()
        },
    }
    write_json_atomically(path, state)


def fail_runs_of_a_previous_up(state_file: Path, dagster_home: Path) -> None:
    """Fail the runs an earlier ``harvest up`` left in progress, unless one of its children is still alive."""
    if state_file.exists():
        try:
            previous = orjson.loads(state_file.read_bytes())["children"].values()
        except (OSError, ValueError, KeyError, AttributeError):
            previous = []
        alive = [child["pid"] for child in previous if child.get("pid") and _process_alive(child["pid"])]
        if alive:
            print(f"harvest up: processes of an earlier run are still alive ({alive}); their runs are left alone")
            return
    orphans = fail_orphaned_runs(dagster_home)
    if orphans:
        print(f"harvest up: {len(orphans)} run(s) left in progress by an earlier run were marked failed", flush=True)


def fail_runs_of_a_previous_daemon(dagster_home: Path) -> None:
    """Before a daemon of its own unit starts: every run in progress was launched by the previous daemon (runs are
    queued, only the daemon launches them) and died with its control group; failed, they free the run queue and are
    retried, instead of holding both run slots until run monitoring gives up on them."""
    orphans = fail_orphaned_runs(dagster_home)
    if orphans:
        print(f"harvest dagster daemon: {len(orphans)} run(s) left in progress by the previous daemon marked failed")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run(args: argparse.Namespace) -> int:
    """Start everything and supervise it until Ctrl-C/SIGTERM or a crash loop."""
    try:
        plan = plan_up(args)
    except (OSError, ValueError) as exc:
        print(f"harvest up: {exc}", file=sys.stderr)
        return 2
    print(banner(plan), flush=True)
    move_legacy_layout(plan.paths.parquet)  # before any child reads or writes Parquet
    state_file = plan.paths.root / UP_STATE_FILE
    fail_runs_of_a_previous_up(state_file, plan.paths.dagster_home)
    supervisor = Supervisor(
        plan.children,
        max_restarts=args.max_restarts,
        on_event=lambda event, child: write_up_state(state_file, plan, supervisor),
    )

    async def supervise() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, supervisor.request_stop)
        return await supervisor.run()

    code = asyncio.run(supervise())
    if supervisor.failure:
        print(f"harvest up: {supervisor.failure}", file=sys.stderr)
    return code


def run_dagster(args: argparse.Namespace) -> int:
    """``harvest dagster init|webserver|daemon``: prepare the instance, or become the Dagster process (same pid, so a
    service manager supervises Dagster itself). The daemon first fails the runs its predecessor left in progress."""
    try:
        settings = load_settings()
        paths = settings.paths()
        paths.root.mkdir(parents=True, exist_ok=True)
        if args.role == "init":
            move_legacy_layout(paths.parquet)
            workspace = ensure_dagster_home(paths, storage_url=settings.dagster_storage)
            print(f"harvest dagster init: DAGSTER_HOME={paths.dagster_home}, workspace {workspace}", flush=True)
            return 0
        workspace = paths.dagster_home / "workspace.yaml"
        if not workspace.exists():
            raise ValueError(f"{workspace} does not exist; run `harvest dagster init` first")
        if args.role == "daemon":
            fail_runs_of_a_previous_daemon(paths.dagster_home)
    except (OSError, ValueError) as exc:
        print(f"harvest dagster {args.role}: {exc}", file=sys.stderr)
        return 2
    argv = dagster_argv(args.role, settings, workspace)
    if not is_loopback(settings.ui_host) and args.role == "webserver":
        print(f"harvest dagster webserver: {settings.ui_host} {_remote_warning(settings).strip()}", file=sys.stderr)
    sys.stdout.flush()
    os.execve(argv[0], argv, {**os.environ, DAGSTER_HOME_ENV: str(paths.dagster_home)})

"""``harvest up``: the whole pipeline in one supervised process tree.

Children: the simulator (offline), the Dagster webserver, the Dagster daemon (sensors, schedules, run queue) and the
collector. All share one data root and one Dagster instance under it. The source is never chosen silently: the banner
says whether data comes from Binance or from the built-in simulator, and why.
"""

from __future__ import annotations

import argparse
import asyncio
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
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.supervisor import ChildSpec, Supervisor

log = logging.getLogger(__name__)

LIVE_WS_BASE = "wss://fstream.binance.com"
LIVE_REST_BASE = "https://fapi.binance.com"
DEFAULT_SYMBOLS = "BTCUSDT,ETHUSDT"
UP_STATE_FILE = "up-state.json"
SIMULATOR_READY_FILE = "simulator-ready.json"


@dataclass(frozen=True)
class UpPlan:
    """What ``harvest up`` will start, resolved from flags before anything runs."""

    paths: DataPaths
    source: str
    source_reason: str
    ws_base: str
    rest_base: str
    ui_url: str
    metrics_url: str
    children: list[ChildSpec]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``up`` subcommand."""
    parser = subparsers.add_parser(
        "up",
        help="run collector + Dagster daemon + Dagster UI (+ simulator offline) under one supervisor",
        description="Start the whole harvest pipeline. Without --simulate/--live it uses Binance when reachable and "
        "the built-in simulator otherwise, and says which.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--simulate", action="store_true", help="feed the pipeline from the built-in simulator")
    source.add_argument(
        "--live",
        action="store_true",
        help="record from the exchange even if unreachable now (the collector retries with backoff)",
    )
    parser.add_argument("--data", help="data root (default $HARVEST_DATA_ROOT or ./data)")
    parser.add_argument("--symbols", default=os.environ.get("HARVEST_SYMBOLS", DEFAULT_SYMBOLS), help="symbols")
    parser.add_argument("--ui-host", default="127.0.0.1", help="Dagster UI address (default 127.0.0.1)")
    parser.add_argument("--ui-port", type=int, default=3000, help="Dagster UI port (default 3000)")
    parser.add_argument("--metrics-port", type=int, default=9108, help="collector metrics port (default 9108)")
    parser.add_argument("--simulator-port", type=int, default=0, help="simulator port (default: a free port)")
    parser.add_argument("--simulator-rate", type=float, default=1.0, help="simulator activity multiplier")
    parser.add_argument("--segment-seconds", type=float, help="seal segments after this many seconds (default 60)")
    parser.add_argument("--max-restarts", type=int, default=5, help="crashes of one child in 5 min before giving up")
    parser.set_defaults(run=run)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def live_bases() -> tuple[str, str]:
    """The exchange to record in live mode: Binance, unless ``HARVEST_WS_BASE``/``HARVEST_REST_BASE`` say otherwise."""
    return os.environ.get("HARVEST_WS_BASE", LIVE_WS_BASE), os.environ.get("HARVEST_REST_BASE", LIVE_REST_BASE)


def exchange_reachable(rest_base: str, timeout_s: float = 3.0) -> tuple[bool, str]:
    """Whether a TCP connection to the exchange's REST host succeeds, with a human reason."""
    url = urllib.parse.urlsplit(rest_base)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True, f"{host}:{port} is reachable"
    except OSError as exc:
        return False, f"{host}:{port} is not reachable ({exc.strerror or exc})"


def plan_up(args: argparse.Namespace) -> UpPlan:
    """Resolve paths, the data source, ports and the child processes from the command-line flags."""
    paths = DataPaths.from_env(args.data)
    paths.root.mkdir(parents=True, exist_ok=True)
    workspace = ensure_dagster_home(paths)
    if args.simulate:
        simulate, reason = True, "--simulate was given"
    elif args.live:
        simulate, reason = False, "--live was given"
    else:
        reachable, why = exchange_reachable(live_bases()[1])
        simulate, reason = not reachable, why
    env = {
        "HARVEST_DATA_ROOT": str(paths.root),
        "DAGSTER_HOME": str(paths.dagster_home),
        "HARVEST_SYMBOLS": args.symbols,
    }
    bin_dir = Path(sys.executable).parent
    logs = paths.root / "logs"
    children: list[ChildSpec] = []
    if simulate:
        port = args.simulator_port or free_port()
        ws_base, rest_base = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
        children.append(
            ChildSpec(
                "simulator",
                [
                    sys.executable,
                    "-m",
                    "harvest_pipeline.cli",
                    "simulate",
                    "--port",
                    str(port),
                    "--symbols",
                    args.symbols,
                    "--rate",
                    str(args.simulator_rate),
                    "--ready-file",
                    str(paths.root / SIMULATOR_READY_FILE),
                    "--accounting-file",
                    str(paths.root / "simulator-accounting.json"),
                ],
                env,
                logs / "simulator.log",
            )
        )
    else:
        ws_base, rest_base = live_bases()
    children.append(
        ChildSpec(
            "dagster-webserver",
            [str(bin_dir / "dagster-webserver"), "-h", args.ui_host, "-p", str(args.ui_port), "-w", str(workspace)],
            env,
            logs / "dagster-webserver.log",
        )
    )
    children.append(
        ChildSpec(
            "dagster-daemon",
            [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
            env,
            logs / "dagster-daemon.log",
        )
    )
    collector_env = {
        **env,
        "HARVEST_WS_BASE": ws_base,
        "HARVEST_REST_BASE": rest_base,
        "HARVEST_METRICS_PORT": str(args.metrics_port),
    }
    if args.segment_seconds:
        collector_env["HARVEST_SEGMENT_MAX_AGE_S"] = str(args.segment_seconds)
    children.append(
        ChildSpec(
            "collector",
            [sys.executable, "-m", "harvest_pipeline.cli", "collect"],
            collector_env,
            logs / "collector.log",
            stop_timeout_s=30.0,
        )
    )
    return UpPlan(
        paths=paths,
        source="simulator" if simulate else "exchange",
        source_reason=reason,
        ws_base=ws_base,
        rest_base=rest_base,
        ui_url=f"http://{args.ui_host}:{args.ui_port}",
        metrics_url=f"http://127.0.0.1:{args.metrics_port}/metrics",
        children=children,
    )


def banner(plan: UpPlan) -> str:
    """The lines printed at start: source (and why), UI, metrics, data and logs."""
    if plan.source == "simulator":
        source = f"SOURCE: built-in simulator at {plan.ws_base} ({plan.source_reason}); use --live to record Binance"
    else:
        source = f"SOURCE: exchange {plan.ws_base} ({plan.source_reason})"
    return "\n".join(
        [
            "harvest up",
            f"  {source}",
            f"  Dagster UI:  {plan.ui_url}",
            f"  metrics:     {plan.metrics_url}   health: {plan.metrics_url.removesuffix('/metrics')}/healthz",
            f"  data:        {plan.paths.root}",
            f"  logs:        {plan.paths.root / 'logs'}",
            "  stop with Ctrl-C (the collector seals its open segment first)",
        ]
    )


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

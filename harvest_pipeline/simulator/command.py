"""``harvest simulate``: run the simulator in its own process until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

import orjson

from harvest_pipeline.atomic_write import write_json_atomically
from harvest_pipeline.markets import DEFAULT_MARKET, MARKETS
from harvest_pipeline.simulator.config import SimulatorConfig
from harvest_pipeline.simulator.faults import FaultError, parse_fault
from harvest_pipeline.simulator.instruments import default_symbols
from harvest_pipeline.simulator.latency import BURST_MEAN_GAP_S, DEFAULT_PUBLISH_LATENCY_MS, TAIL_RATIO, parse_latency
from harvest_pipeline.simulator.market import LIQUIDATION_SHARE
from harvest_pipeline.simulator.server import running_simulator

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help="run the offline Binance simulator (websocket + REST + admin fault API) of one market",
        description="Serve Binance compatible market data of one market (USDⓈ-M, COIN-M or spot) on loopback, driven "
        "by a seeded order-book model or by replaying recorded segments.",
    )
    parser.add_argument(
        "--market",
        choices=list(MARKETS),
        default=DEFAULT_MARKET,
        help="the Binance market served, one per process: "
        + ", ".join(name if each.title == name else f"{name} ({each.title})" for name, each in MARKETS.items())
        + f" (default {DEFAULT_MARKET})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address of the websocket/REST port (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="websocket + REST port (default 0 = any free port)")
    parser.add_argument("--admin-port", type=int, default=0, help="admin API port on 127.0.0.1 (default 0 = any)")
    catalogues = "; ".join(f"{name}: {','.join(default_symbols(name))}" for name in MARKETS)
    parser.add_argument(
        "--symbols", default="", help=f"comma-separated symbols (default: every instrument of the market; {catalogues})"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the market model (default 1)")
    parser.add_argument("--rate", type=float, default=1.0, help="activity multiplier: 0.1 quiet, 1 busy, 20+ frantic")
    parser.add_argument("--max-lifetime", type=float, default=86400.0, help="connection lifetime in s (default 24 h)")
    parser.add_argument("--ping-interval", type=float, default=180.0, help="server ping interval in s (default 180)")
    parser.add_argument("--ping-timeout", type=float, default=600.0, help="drop a client after s without pong")
    parser.add_argument("--send-queue", type=int, default=10_000, help="frames queued per client before it is dropped")
    parser.add_argument("--send-buffer", type=int, help="SO_SNDBUF bytes per client socket (default: OS default)")
    limits = ", ".join(f"{name} {each.weight_per_minute}" for name, each in MARKETS.items())
    parser.add_argument(
        "--weight-limit", type=int, default=0, help=f"REST request weight per minute (default: the market's: {limits})"
    )
    parser.add_argument(
        "--agg-trade-horizon-s",
        type=float,
        help="REST stops serving aggTrades older than this many seconds (default: none; the last 100,000 are kept)",
    )
    parser.add_argument(
        "--book-history-s",
        type=float,
        default=600.0,
        help="seconds back GET /admin/book answers the true order book at any depth diff (default 600)",
    )
    parser.add_argument(
        "--liquidation-share",
        type=float,
        default=LIQUIDATION_SHARE,
        help=f"share of market orders that are liquidations, on @forceOrder (default {LIQUIDATION_SHARE})",
    )
    parser.add_argument(
        "--publish-latency-ms",
        default="{:g},{:g}".format(*DEFAULT_PUBLISH_LATENCY_MS),
        help=f"matching to publishing, E - T: 'median' (p99 = median x {TAIL_RATIO}) or 'median,p99' in ms, with a "
        f"burst about every {BURST_MEAN_GAP_S:.0f} s; 0: E == T (default %(default)s)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve wss:// and https:// with a self-signed certificate for 127.0.0.1/localhost, written to "
        "<ready file stem>.ca.pem (or a temporary directory) for clients to trust; the admin API stays plain HTTP",
    )
    parser.add_argument(
        "--ready-file", type=Path, help="write the bases, pid and ca_file here (atomically) once listening"
    )
    parser.add_argument("--accounting-file", type=Path, help="write the accounting JSON here on shutdown")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="JSON",
        help='fault to apply at start, e.g. \'{"fault":"burst","seconds":10,"multiplier":20}\' (repeatable)',
    )
    parser.add_argument(
        "--replay", nargs="+", type=Path, default=[], metavar="SEGMENT", help="replay recorded segments"
    )
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed factor (default 1 = original pacing)")
    parser.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """The simulator settings given on the command line; raises ``ValueError`` with a message for bad values."""
    faults: list[dict[str, Any]] = []
    for text in args.fault:
        try:
            faults.append(parse_fault(orjson.loads(text)))
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"--fault {text!r} is not JSON: {exc}") from None
        except FaultError as exc:
            raise ValueError(f"--fault {text!r}: {exc}") from None
    return SimulatorConfig(
        market=args.market,
        symbols=tuple(symbol.strip() for symbol in args.symbols.split(",") if symbol.strip()),
        seed=args.seed,
        rate=args.rate,
        ping_interval_s=args.ping_interval,
        ping_timeout_s=args.ping_timeout,
        max_lifetime_s=args.max_lifetime,
        send_queue_frames=args.send_queue,
        send_buffer_bytes=args.send_buffer,
        weight_limit_per_minute=args.weight_limit,
        host=args.host,
        port=args.port,
        admin_port=args.admin_port,
        faults=tuple(faults),
        agg_trade_horizon_s=args.agg_trade_horizon_s,
        book_history_s=args.book_history_s,
        liquidation_share=args.liquidation_share,
        replay=tuple(args.replay),
        replay_speed=args.speed,
        publish_latency_ms=parse_latency(args.publish_latency_ms),
        tls=args.tls,
    )


async def serve_until_signalled(config: SimulatorConfig, ready_file: Path | None, accounting_file: Path | None) -> None:
    """Run the simulator until SIGTERM/SIGINT, then close connections and write the accounting file."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ca_file = ready_file.with_name(f"{ready_file.stem}.ca.pem") if ready_file is not None else None
    async with running_simulator(config, ca_file) as sim:
        if ready_file is not None:
            bases = {"ws_base": sim.ws_base, "rest_base": sim.rest_base, "admin_base": sim.admin_base}
            ca = str(sim.ca_file) if sim.ca_file is not None else None
            write_json_atomically(ready_file, {**bases, "pid": os.getpid(), "ca_file": ca})
        await stop.wait()
        log.info("simulator stopping on signal")
    if accounting_file is not None:
        write_json_atomically(accounting_file, sim.accounting())


def run(args: argparse.Namespace) -> int:
    """Handler of ``harvest simulate``."""
    try:
        config = config_from_args(args)
    except (ValueError, FileNotFoundError) as exc:
        log.error("cannot start the simulator: %s", exc)
        return 2
    try:
        asyncio.run(serve_until_signalled(config, args.ready_file, args.accounting_file))
    except FileNotFoundError as exc:
        log.error("cannot start the simulator: %s", exc)
        return 2
    return 0

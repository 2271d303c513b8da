"""`harvest ...`: the command line. Each subcommand lives beside the code it drives and registers itself here."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES = [
    "harvest_pipeline.simulator.command",
    "harvest_pipeline.collector.command",
    "harvest_pipeline.features.command",
    "harvest_pipeline.features.plot_command",
    "harvest_pipeline.backfill.command",
    "harvest_pipeline.reading.sql_command",
    "harvest_pipeline.up",
    "harvest_pipeline.status",
]
"""Modules that each define ``register(subparsers)`` adding their subcommands; each handler is ``args.run(args)``."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="harvest", description="Binance USD-M market-data capture and research tables"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``harvest`` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # Dagster's schema setup would bury the banner
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

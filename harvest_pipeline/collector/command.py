"""`harvest collect`: run the collector until SIGTERM/SIGINT.

Every ``CollectorConfig`` field is a flag (``--segment-max-age-s 60``) and an environment variable
(``HARVEST_SEGMENT_MAX_AGE_S``); flags win over the environment, which wins over defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging

from harvest_pipeline.collector.config import CollectorConfig, config_with_overrides, env_name
from harvest_pipeline.collector.service import CollectorLocked, CollectorService, load_file_system, run_until_signalled
from harvest_pipeline.paths import DataPaths

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``collect`` subcommand."""
    parser = subparsers.add_parser("collect", help="record Binance USD-M websocket frames into raw segments")
    defaults = CollectorConfig()
    for field in dataclasses.fields(CollectorConfig):
        default = getattr(defaults, field.name)
        shown = ",".join(default) if isinstance(default, tuple) else default
        if isinstance(default, dict):
            shown = ",".join(f"{k}={v}" for k, v in default.items())
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=field.name,
            default=None,
            help=f"env {env_name(field.name)}; default {shown}",
        )
    parser.set_defaults(run=run_collect)


def run_collect(args: argparse.Namespace) -> int:
    """Build the configuration from defaults, environment and flags, then run the collector."""
    flags = {field.name: getattr(args, field.name) for field in dataclasses.fields(CollectorConfig)}
    try:
        config = config_with_overrides(CollectorConfig.from_env(), flags)
        fs = load_file_system(config.fs_factory)
    except (ValueError, ImportError, AttributeError, TypeError) as exc:
        log.error("invalid collector configuration: %s", exc)
        return 2
    paths = DataPaths.from_env(config.data_root)
    log.info("collector %s: %d symbols, segments under %s", config.collector_id, len(config.symbols), paths.segments)
    try:
        return asyncio.run(run_until_signalled(CollectorService(config, paths, fs)))
    except CollectorLocked as exc:
        log.error("%s", exc)
        return 2

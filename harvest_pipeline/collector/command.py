"""`harvest collect`: run the collector until SIGTERM/SIGINT.

Every installation setting the collector uses (``--market``, ``--symbols``, ``--data-root``, ``--ws-base`` …) and every
``CollectorConfig`` tuning field (``--segment-max-bytes``, ``--watchdog-s`` …) is a flag and an environment variable
(``HARVEST_SYMBOLS``, ``HARVEST_WATCHDOG_S``); flags win over the environment, which wins over the settings file
(``HARVEST_SETTINGS_FILE``, installation settings only) and the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
from typing import Any

from harvest_pipeline.collector.config import (
    INSTALLATION_FIELDS,
    MARKET_FOLLOWING_FIELDS,
    CollectorConfig,
    config_with_overrides,
)
from harvest_pipeline.collector.service import CollectorLocked, CollectorService, load_file_system, run_until_signalled
from harvest_pipeline.markets import MARKETS
from harvest_pipeline.settings import InstallationSettings, env_name, load_settings

log = logging.getLogger(__name__)

INSTALLATION_FLAGS = ("data_root", "segments_dir", *INSTALLATION_FIELDS)
"""Installation settings ``harvest collect`` accepts as flags: where to write, and the fields it shares."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``collect`` subcommand."""
    parser = subparsers.add_parser(
        "collect", help="record one Binance market's websocket frames (--market usdm|coinm|spot) into raw segments"
    )
    settings, config = InstallationSettings(), CollectorConfig()
    defaults = {name: getattr(settings, name) for name in INSTALLATION_FLAGS}
    for f in dataclasses.fields(CollectorConfig):
        defaults.setdefault(f.name, getattr(config, f.name))
    for name, default in defaults.items():
        flag, shown = f"--{name.replace('_', '-')}", _shown(default)
        if name == "market":
            shown += f" (one of {', '.join(MARKETS)})"
        elif name in MARKET_FOLLOWING_FIELDS:
            shown = f"{shown} on {config.market}, else the market's"
        parser.add_argument(flag, dest=name, default=None, help=f"env {env_name(name)}; default {shown}")
    parser.set_defaults(run=run_collect)


def _shown(default: Any) -> str:
    if isinstance(default, tuple):
        return ",".join(default)
    if isinstance(default, dict):
        return ",".join(f"{k}={v}" for k, v in default.items())
    return str(default)


def run_collect(args: argparse.Namespace) -> int:
    """Resolve the installation settings, then the collector's own tuning, then run the collector."""
    installation_flags = {name: getattr(args, name) for name in INSTALLATION_FLAGS}
    tuning_flags = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(CollectorConfig) if f.name not in INSTALLATION_FIELDS
    }
    try:
        settings = load_settings(installation_flags)
        config = config_with_overrides(CollectorConfig.from_settings(settings), tuning_flags)
        fs = load_file_system(config.fs_factory)
    except (ValueError, ImportError, AttributeError, TypeError) as exc:
        log.error("invalid collector configuration: %s", exc)
        return 2
    paths = settings.paths()
    log.info(
        "collector %s (%s): symbols %s, segments under %s",
        config.collector_id,
        config.exchange.title,
        ",".join(config.symbols),
        paths.segments,
    )
    try:
        return asyncio.run(run_until_signalled(CollectorService(config, paths, fs)))
    except CollectorLocked as exc:
        log.error("%s", exc)
        return 2

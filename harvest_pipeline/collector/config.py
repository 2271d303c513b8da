"""Collector settings: one typed object with defaults, overridable by ``HARVEST_*`` environment variables and CLI flags.

What the whole installation must agree on (symbols, exchange bases, metrics address, segment age, the data root) comes
from the installation settings (``harvest_pipeline.settings``: flag > env > settings file > default); the fields below
that mirror them take their defaults from there. The rest is this process's own tuning (queues, watchdog, backoff …):
CLI flag > ``HARVEST_<FIELD>`` environment variable > default. ``CollectorConfig.from_env`` reads both;
``harvest collect`` then applies the flags it was given (``config_with_overrides``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harvest_pipeline.segments import validate_collector_id
from harvest_pipeline.settings import InstallationSettings, env_name, load_settings, to_bool
from harvest_pipeline.symbols import SymbolSelection

DEFAULT_SETTINGS = InstallationSettings()

MAX_STREAMS_PER_CONNECTION = 200

DEFAULT_ROUTES: dict[str, str] = {
    "aggTrade": "market",
    "trade": "market",
    "markPrice@1s": "market",
    "forceOrder": "market",
    "kline_1m": "market",
    "depth@100ms": "public",
    "bookTicker": "public",
}
"""Which routed endpoint serves each stream kind (Binance USD-M since 2026-04-23; a wrong route is silent)."""

DEFAULT_STREAM_KINDS = ("aggTrade", "depth@100ms", "bookTicker", "markPrice@1s", "forceOrder", "kline_1m")
"""What is recorded unless told otherwise. ``trade`` (every fill, several times the aggTrade volume) only on request."""

QUIET_STREAM_KINDS = frozenset({"forceOrder"})
"""Stream kinds that legitimately send nothing for hours (liquidations): the watchdog never fires on their silence and
/healthz shows them ``quiet``; their connection is watched through the other streams it carries."""


def is_quiet_stream(stream: str) -> bool:
    """Whether ``stream`` (``<symbol>@<kind>``) is of a kind whose silence is normal."""
    return stream.partition("@")[2] in QUIET_STREAM_KINDS


@dataclass(frozen=True)
class CollectorConfig:
    """Everything the collector can be told. Times are seconds, sizes bytes."""

    symbols: tuple[str, ...] = DEFAULT_SETTINGS.symbols
    """Explicit symbols and/or the selectors ``top:N`` and ``all`` (``harvest_pipeline.symbols``): read it through
    ``symbol_selection``; the symbols recorded at a given moment are the service's (``CollectorService.symbols``)."""
    symbols_refresh_s: float = 3600.0
    """How often the selectors (``top:N``, ``all``) are resolved again from REST (exchangeInfo weight 1, plus
    ticker/24hr weight 40 for ``top:N``); symbols that enter are subscribed, those that leave closed, without a
    restart. A selection of explicit symbols only never asks."""
    stream_kinds: tuple[str, ...] = DEFAULT_STREAM_KINDS
    routes: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ROUTES))
    ws_base: str = DEFAULT_SETTINGS.ws_base
    rest_base: str = DEFAULT_SETTINGS.rest_base
    collector_id: str = "c1"
    streams_per_connection: int = MAX_STREAMS_PER_CONNECTION
    max_frame_bytes: int = 4 * 1024 * 1024
    connect_timeout_s: float = 10.0
    connect_stagger_s: float = 0.25
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    stable_after_s: float = 30.0
    watchdog_s: float = 60.0
    max_connection_age_s: float = 23.5 * 3600
    rotation_jitter_s: float = 600.0
    rotation_overlap_s: float = 10.0
    snapshot_limit: int = 1000
    rest_weight_per_minute: int = 1200
    rest_timeout_s: float = 10.0
    snapshot_retry_max_s: float = 60.0
    snapshot_refresh_s: float = 3600.0
    """Every symbol with depth diffs gets a fresh snapshot this often (spread over the interval; 0: only at start and
    after a break or a loss). Bounds how long a book stays unverifiable when nothing breaks it, e.g. when the day
    before's book was never built and so cannot be carried over midnight (docs/book.md); 20 weight per symbol."""
    backfill: bool = True
    """Fill aggTrade holes from REST ``/fapi/v1/aggTrades`` while collecting."""
    backfill_weight_share: float = 0.5
    """The share of ``rest_weight_per_minute`` the trade backfill may use (the rest stays for depth snapshots)."""
    backfill_max_attempts: int = 5
    backfill_retry_max_s: float = 30.0
    backfill_max_holes: int = 10_000
    open_interest_interval_s: float = 60.0
    """Every symbol's open interest is polled from REST ``/fapi/v1/openInterest`` this often, the symbols spread evenly
    over the interval (0: off). Weight 1 per poll."""
    open_interest_weight_share: float = 0.1
    """The most of ``rest_weight_per_minute`` the open-interest polls may spend; more symbols than that allows at
    ``open_interest_interval_s`` stretch the interval (logged at start)."""
    segment_max_age_s: float = DEFAULT_SETTINGS.segment_max_age_s
    segment_max_bytes: int = 64 * 1024 * 1024
    fsync_interval_s: float = 1.0
    queue_max_lines: int = 200_000
    queue_max_bytes: int = 256 * 1024 * 1024
    write_retry_initial_s: float = 0.1
    write_retry_max_s: float = 5.0
    disk_free_warn_bytes: int = 2 * 1024**3
    shutdown_deadline_s: float = 15.0
    metrics_host: str = DEFAULT_SETTINGS.metrics_host
    metrics_port: int = DEFAULT_SETTINGS.metrics_port
    ready_file: str | None = None
    fs_factory: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbols", SymbolSelection.parse(self.symbols).entries)
        if self.symbols_refresh_s <= 0:
            raise ValueError(f"symbols_refresh_s must be positive, not {self.symbols_refresh_s}")
        validate_collector_id(self.collector_id)
        for kind in self.stream_kinds:
            if kind not in self.routes:
                raise ValueError(f"stream kind {kind!r} has no route; known: {sorted(self.routes)}")
        if not 1 <= self.streams_per_connection <= MAX_STREAMS_PER_CONNECTION:
            raise ValueError(f"streams_per_connection must be 1-{MAX_STREAMS_PER_CONNECTION}")
        if self.segment_max_age_s <= 0 or self.segment_max_bytes <= 0:
            raise ValueError("segment_max_age_s and segment_max_bytes must be positive")
        if self.open_interest_interval_s < 0:
            raise ValueError("open_interest_interval_s must be >= 0 (0 turns the open-interest polls off)")
        if not 0 < self.open_interest_weight_share <= 1:
            raise ValueError("open_interest_weight_share must be in (0, 1]")

    @property
    def symbol_selection(self) -> SymbolSelection:
        """``symbols`` parsed: the explicit symbols and the selectors."""
        return SymbolSelection.parse(self.symbols)

    def streams_of(self, symbol: str) -> list[str]:
        """The stream names of one symbol, one per configured kind."""
        return [f"{symbol.lower()}@{kind}" for kind in self.stream_kinds]

    def streams_by_route(self, symbols: Iterable[str] | None = None) -> dict[str, list[str]]:
        """Stream names (lower-case symbol ``@`` kind) of ``symbols`` (default: the explicit ones) grouped by the
        routed endpoint that serves them, symbol by symbol: a connection then carries every kind of its symbols, so
        its quiet streams share it with watched ones."""
        grouped: dict[str, list[str]] = {}
        for symbol in self.symbol_selection.explicit if symbols is None else symbols:
            for kind in self.stream_kinds:
                grouped.setdefault(self.routes[kind], []).append(f"{symbol.lower()}@{kind}")
        return grouped

    @classmethod
    def from_settings(cls, settings: InstallationSettings, environ: Mapping[str, str] | None = None) -> CollectorConfig:
        """The installation's values for the shared fields, then ``HARVEST_<FIELD>`` variables for the tuning ones."""
        env = os.environ if environ is None else environ
        shared = {name: getattr(settings, name) for name in INSTALLATION_FIELDS}
        tuning = {
            f.name: env[env_name(f.name)]
            for f in dataclasses.fields(cls)
            if f.name not in INSTALLATION_FIELDS and env_name(f.name) in env
        }
        return config_with_overrides(cls(**shared), tuning)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CollectorConfig:
        """The installation settings (file and ``HARVEST_*`` variables) and the tuning variables of ``environ``."""
        env = os.environ if environ is None else environ
        return cls.from_settings(load_settings(environ=env), env)


INSTALLATION_FIELDS = tuple(
    f.name for f in dataclasses.fields(CollectorConfig) if f.name in InstallationSettings.__dataclass_fields__
)
"""The collector fields that are installation settings: set them through the installation settings."""


def config_with_overrides(config: CollectorConfig, overrides: dict[str, Any]) -> CollectorConfig:
    """A copy of ``config`` with fields replaced; string values are converted to the field's type."""
    types = {f.name: str(f.type) for f in dataclasses.fields(CollectorConfig)}
    converted: dict[str, Any] = {}
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in types:
            raise ValueError(f"unknown collector setting {name!r}")
        converted[name] = _convert(name, types[name], value) if isinstance(value, str) else value
    return dataclasses.replace(config, **converted)


def _convert(name: str, type_name: str, value: str) -> Any:
    try:
        if type_name.startswith("dict"):
            pairs = (part.split("=", 1) for part in value.split(",") if part.strip())
            return {**DEFAULT_ROUTES, **{key.strip(): route.strip() for key, route in pairs}}
        if type_name.startswith("tuple"):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if type_name == "bool":
            return to_bool(value)
        if type_name == "int":
            return int(value)
        if type_name == "float":
            return float(value)
    except ValueError:
        raise ValueError(f"collector setting {name}={value!r} is not a valid {type_name}") from None
    if type_name.startswith("str"):
        return value
    raise ValueError(f"collector setting {name} cannot be set from text")

"""Collector settings: one typed object with defaults, overridable by ``HARVEST_*`` environment variables and CLI flags.

What the whole installation must agree on (market, symbols, exchange bases, metrics address, segment age, the data
root) comes from the installation settings (``harvest_pipeline.settings``: flag > env > settings file > default); the
fields below that mirror them take their defaults from there. The rest is this process's own tuning (queues,
watchdog, backoff …): CLI flag > ``HARVEST_<FIELD>`` environment variable > default. ``CollectorConfig.from_env``
reads both; ``harvest collect`` then applies the flags it was given (``config_with_overrides``).

A collector records one market (``harvest_pipeline.markets``). The defaults that differ per market follow it unless
given: the symbols, the exchange bases, the stream kinds, the snapshot depth, the request-weight budget and the
collector id (so collectors of two markets can share one data root). They are resolved once, when the config is
built: its market cannot be changed afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harvest_pipeline.markets import DEFAULT_MARKET, MARKETS, USDM, Market, market
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
"""Which routed endpoint serves each stream kind on a routed market (Binance USD-M since 2026-04-23; a wrong route is
silent). Unrouted markets serve every kind on ``/stream`` (route ``UNROUTED``)."""

UNROUTED = "unrouted"
"""The route of every stream on an unrouted market (COIN-M, spot): its connections go to ``<ws_base>/stream``."""

DEFAULT_STREAM_KINDS = USDM.default_stream_kinds
"""What is recorded on USDⓈ-M unless told otherwise (each market's: ``Market.default_stream_kinds``). ``trade`` (every
fill, several times the aggTrade volume) only on request."""

MARKET_DEFAULT_KINDS = "default"
"""The ``stream_kinds`` entry that stands for the market's default kinds."""

MARKET_FOLLOWING_FIELDS = (
    "symbols",
    "stream_kinds",
    "ws_base",
    "rest_base",
    "collector_id",
    "snapshot_limit",
    "rest_weight_per_minute",
)
"""The fields whose default is the market's (``CollectorConfig._follow_the_market``)."""

BASE_COLLECTOR_ID = "c1"
"""The collector id on USDⓈ-M; other markets add their name (``c1.coinm``, ``c1.spot``)."""

QUIET_STREAM_KINDS = frozenset({"forceOrder"})
"""Stream kinds that legitimately send nothing for hours (liquidations): the watchdog never fires on their silence and
/healthz shows them ``quiet``; their connection is watched through the other streams it carries."""


def is_quiet_stream(stream: str) -> bool:
    """Whether ``stream`` (``<symbol>@<kind>``) is of a kind whose silence is normal."""
    return stream.partition("@")[2] in QUIET_STREAM_KINDS


def default_collector_id(market_name: str) -> str:
    """The collector id a market's collector uses unless given one: ``c1`` on USDⓈ-M, ``c1.<market>`` otherwise."""
    return BASE_COLLECTOR_ID if market_name == USDM.name else f"{BASE_COLLECTOR_ID}.{market_name}"


def kind_family(kind: str) -> str:
    """The stream family of a kind: its leading letters (``depth@100ms`` -> ``depth``, ``kline_1m`` -> ``kline``)."""
    match = re.match(r"[A-Za-z]+", kind)
    return match.group() if match else kind


def _expand_default_kinds(kinds: Iterable[str], exchange: Market) -> tuple[str, ...]:
    """``kinds`` with the entry ``default`` replaced by the market's default kinds, each kind once, in order."""
    expanded: list[str] = []
    for kind in kinds:
        for each in exchange.default_stream_kinds if kind == MARKET_DEFAULT_KINDS else (kind,):
            if each not in expanded:
                expanded.append(each)
    return tuple(expanded)


def unserved_kind_error(exchange: Market, kind: str) -> str | None:
    """Why ``exchange`` cannot serve ``kind`` (a family another market serves and this one does not, e.g.
    ``markPrice@1s`` on spot), or None. Families no market lists (``ticker``) are the operator's call."""
    served = {kind_family(own) for own in exchange.stream_kinds}
    known = {kind_family(other) for each in MARKETS.values() for other in each.stream_kinds}
    if kind_family(kind) in known - served:
        return f"stream kind {kind!r} is not served on {exchange.title}; its kinds: {', '.join(exchange.stream_kinds)}"
    return None


@dataclass(frozen=True)
class CollectorConfig:
    """Everything the collector can be told. Times are seconds, sizes bytes."""

    market: str = DEFAULT_MARKET
    """The Binance market recorded (``usdm``, ``coinm``, ``spot``: ``harvest_pipeline.markets``)."""
    symbols: tuple[str, ...] = ()
    """Explicit symbols and/or the selectors ``top:N`` and ``all`` (``harvest_pipeline.symbols``; none given: the
    market's default symbols): read it through ``symbol_selection``; the symbols recorded at a given moment are the
    service's (``CollectorService.symbols``)."""
    symbols_refresh_s: float = 3600.0
    """How often the selectors (``top:N``, ``all``) are resolved again from REST (exchangeInfo weight 1, plus
    ticker/24hr weight 40 for ``top:N``); symbols that enter are subscribed, those that leave closed, without a
    restart. A selection of explicit symbols only never asks."""
    stream_kinds: tuple[str, ...] = (MARKET_DEFAULT_KINDS,)
    """The stream kinds recorded; the entry ``default`` stands for the market's ``default_stream_kinds``
    (``default,trade`` adds raw trades). A kind the market does not serve is refused."""
    routes: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ROUTES))
    """Stream kind -> routed endpoint, on a routed market only (unrouted markets put every kind on ``/stream``)."""
    ws_base: str = ""
    """Websocket base URL; empty: the market's."""
    rest_base: str = ""
    """REST base URL; empty: the market's."""
    collector_id: str = ""
    """Names this collector's open directory (``open/<collector_id>/``, locked) and its segments; empty: ``c1`` on
    USDⓈ-M, ``c1.<market>`` otherwise, so collectors of two markets can share one data root."""
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
    snapshot_limit: int = 0
    """Levels of each REST depth snapshot; 0: the deepest the market serves (``Market.snapshot_limit``)."""
    rest_weight_per_minute: int = 0
    """The request weight per minute every REST caller shares; 0: half the market's limit (1,200 on USDⓈ-M)."""
    rest_timeout_s: float = 10.0
    snapshot_retry_max_s: float = 60.0
    snapshot_refresh_s: float = 3600.0
    """Every symbol with depth diffs gets a fresh snapshot this often (spread over the interval; 0: only at start and
    after a break or a loss). Bounds how long a book stays unverifiable when nothing breaks it, e.g. when the day
    before's book was never built and so cannot be carried over midnight (docs/book.md); the market's snapshot weight
    per symbol (20 on USDⓈ-M)."""
    backfill: bool = True
    """Fill aggTrade holes from the market's REST ``aggTrades`` (``/fapi/v1/aggTrades`` …) while collecting."""
    backfill_weight_share: float = 0.5
    """The share of ``rest_weight_per_minute`` the trade backfill may use (the rest stays for depth snapshots)."""
    backfill_max_attempts: int = 5
    backfill_retry_max_s: float = 30.0
    backfill_max_holes: int = 10_000
    open_interest_interval_s: float = 60.0
    """Every symbol's open interest is polled from the market's REST ``openInterest`` (``/fapi/v1/openInterest`` …)
    this often, the symbols spread evenly over the interval (0: off; never on a market without open interest, spot).
    Weight 1 per poll."""
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
    object_store: str = ""
    """``s3://bucket/prefix`` to ship sealed segments to (``collector.shipper``); empty: they stay on local disk."""
    s3_endpoint: str = ""
    ship_retry_initial_s: float = 1.0
    ship_retry_max_s: float = 30.0
    """Backoff between shipping attempts while the bucket fails (doubling, capped, jittered)."""

    def __post_init__(self) -> None:
        self._follow_the_market()
        if self.symbols_refresh_s <= 0:
            raise ValueError(f"symbols_refresh_s must be positive, not {self.symbols_refresh_s}")
        validate_collector_id(self.collector_id)
        for kind in self.stream_kinds:
            problem = unserved_kind_error(self.exchange, kind)
            if problem is not None:
                raise ValueError(problem)
            if self.exchange.routed and kind not in self.routes:
                raise ValueError(f"stream kind {kind!r} has no route; known: {sorted(self.routes)}")
        if self.snapshot_limit < 1 or self.rest_weight_per_minute < 1:
            raise ValueError("snapshot_limit and rest_weight_per_minute must be positive (0: the market's)")
        if not 1 <= self.streams_per_connection <= MAX_STREAMS_PER_CONNECTION:
            raise ValueError(f"streams_per_connection must be 1-{MAX_STREAMS_PER_CONNECTION}")
        if self.segment_max_age_s <= 0 or self.segment_max_bytes <= 0:
            raise ValueError("segment_max_age_s and segment_max_bytes must be positive")
        if self.open_interest_interval_s < 0:
            raise ValueError("open_interest_interval_s must be >= 0 (0 turns the open-interest polls off)")
        if not 0 < self.open_interest_weight_share <= 1:
            raise ValueError("open_interest_weight_share must be in (0, 1]")

    def _follow_the_market(self) -> None:
        """Replace every default that follows the market by the market's value (explicit values stay)."""
        chosen = market(self.market)
        resolved = {
            "symbols": SymbolSelection.parse(self.symbols or chosen.default_symbols).entries,
            "stream_kinds": _expand_default_kinds(self.stream_kinds, chosen),
            "ws_base": self.ws_base or chosen.ws_base,
            "rest_base": self.rest_base or chosen.rest_base,
            "collector_id": self.collector_id or default_collector_id(chosen.name),
            "snapshot_limit": self.snapshot_limit or chosen.snapshot_limit,
            "rest_weight_per_minute": self.rest_weight_per_minute or chosen.weight_per_minute // 2,
        }
        for name, value in resolved.items():
            object.__setattr__(self, name, value)

    @property
    def exchange(self) -> Market:
        """The market recorded (``market`` looked up)."""
        return market(self.market)

    @property
    def symbol_selection(self) -> SymbolSelection:
        """``symbols`` parsed: the explicit symbols and the selectors."""
        return SymbolSelection.parse(self.symbols)

    def route_of(self, kind: str) -> str:
        """The endpoint that serves ``kind``: its route on a routed market, else ``UNROUTED``."""
        return self.routes[kind] if self.exchange.routed else UNROUTED

    def stream_url(self, route: str) -> str:
        """The combined-stream URL of a route: ``<ws_base>/<route>/stream``, or ``<ws_base>/stream`` unrouted."""
        base = self.ws_base.rstrip("/")
        return f"{base}/stream" if route == UNROUTED else f"{base}/{route}/stream"

    def rest_url(self, endpoint: str) -> str:
        """The URL of a REST endpoint of the market (``rest_url("depth")``: ``<rest_base>/fapi/v1/depth`` …)."""
        return f"{self.rest_base.rstrip('/')}{self.exchange.rest_path(endpoint)}"

    def streams_of(self, symbol: str) -> list[str]:
        """The stream names of one symbol, one per configured kind."""
        return [f"{symbol.lower()}@{kind}" for kind in self.stream_kinds]

    def streams_by_route(self, symbols: Iterable[str] | None = None) -> dict[str, list[str]]:
        """Stream names (lower-case symbol ``@`` kind) of ``symbols`` (default: the explicit ones) grouped by the
        endpoint that serves them (``route_of``), symbol by symbol: a connection then carries every kind of its
        symbols, so its quiet streams share it with watched ones."""
        grouped: dict[str, list[str]] = {}
        for symbol in self.symbol_selection.explicit if symbols is None else symbols:
            for kind in self.stream_kinds:
                grouped.setdefault(self.route_of(kind), []).append(f"{symbol.lower()}@{kind}")
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
    """A copy of ``config`` with fields replaced; string values are converted to the field's type. The market cannot
    change: the defaults that follow it are already resolved (build the config with its market instead)."""
    types = {f.name: str(f.type) for f in dataclasses.fields(CollectorConfig)}
    converted: dict[str, Any] = {}
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in types:
            raise ValueError(f"unknown collector setting {name!r}")
        converted[name] = _convert(name, types[name], value) if isinstance(value, str) else value
    if converted.get("market", config.market) != config.market:
        raise ValueError(
            f"cannot move a {config.market} collector config to market {converted['market']!r}: its defaults follow "
            "the market it was built for; build it with CollectorConfig(market=...) or the market setting"
        )
    return dataclasses.replace(config, **converted)


def _convert(name: str, type_name: str, value: str) -> Any:
    type_name = type_name.removesuffix(" | None")
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

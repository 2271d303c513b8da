"""The settings of one harvest installation: one typed object, one default per setting, validated once.

Precedence, highest first: command-line flag > ``HARVEST_<FIELD>`` environment variable > the settings file named by
``HARVEST_SETTINGS_FILE`` (TOML or JSON, keys are the field names) > the default below. ``harvest up`` resolves them
once and hands its children one file (``<data root>/harvest-settings.json``) instead of one string per setting; the
collector, the Dagster definitions (partitions, the ``HarvestStorage`` resource) and the CLI all load it here.

Per-process tuning (the collector's queue sizes, watchdog, backoff …) stays with its process (``CollectorConfig``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import os
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harvest_pipeline.atomic_write import write_json_atomically
from harvest_pipeline.markets import DEFAULT_MARKET, Market, market
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.symbols import SymbolSelection, canonical_entry

SETTINGS_FILE_ENV = "HARVEST_SETTINGS_FILE"
RESOLVED_SETTINGS_FILE = "harvest-settings.json"
"""Where ``harvest up`` writes the resolved settings for its children, under the data root."""

ENV_NAMES_OUTSIDE_THE_PREFIX = {"dagster_home": "DAGSTER_HOME"}


@dataclass(frozen=True)
class InstallationSettings:
    """What every process of one installation must agree on. Times are seconds."""

    symbols: tuple[str, ...] | None = None
    """What the collector records (None: the market's default, ``BTCUSDT`` on USDⓈ-M; always a tuple once the
    settings are built; an empty list is refused): explicit symbols
    and/or the selectors ``top:N`` and ``all``
    (``harvest_pipeline.symbols``), kept as written canonically (``BTCUSDT``, ``top:5``, ``all``). Read it through
    ``symbol_selection`` or ``explicit_symbols``: an entry may be a selector, not a symbol."""
    data_root: str = "data"
    segments_dir: str | None = None
    parquet_dir: str | None = None
    quarantine_dir: str | None = None
    dagster_home: str | None = None
    market: str = DEFAULT_MARKET
    """The Binance market the collector records (``usdm``, ``coinm``, ``spot``: ``harvest_pipeline.markets``)."""
    ws_base: str = ""
    """Websocket base URL; empty: the market's (``wss://fstream.binance.com`` for ``usdm``)."""
    rest_base: str = ""
    """REST base URL; empty: the market's (``https://fapi.binance.com`` for ``usdm``)."""
    ui_host: str = "127.0.0.1"
    ui_port: int = 3000
    ui_allow_remote: bool = False
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9108
    segment_max_age_s: float = 60.0
    start_date: str = "2026-01-01"
    dagster_storage: str | None = None
    object_store: str = ""
    """``s3://bucket/prefix``: collectors ship every sealed segment there (docs/scaling.md); empty: local disk only.
    Credentials and region come from the standard ``AWS_*`` environment variables."""
    s3_endpoint: str = ""
    """The S3 API of an S3-compatible server (``http://127.0.0.1:8333``); empty: ``AWS_ENDPOINT_URL``, else AWS."""

    def __post_init__(self) -> None:
        chosen = market(self.market)
        given = chosen.default_symbols if self.symbols is None else self.symbols
        object.__setattr__(self, "symbols", SymbolSelection.parse(given).entries)
        object.__setattr__(self, "ws_base", self.ws_base or chosen.ws_base)
        object.__setattr__(self, "rest_base", self.rest_base or chosen.rest_base)
        _check_url("ws_base", self.ws_base, ("ws", "wss"))
        _check_url("rest_base", self.rest_base, ("http", "https"))
        _check_port("ui_port", self.ui_port, lowest=1)
        _check_port("metrics_port", self.metrics_port, lowest=0)
        if self.object_store:
            from harvest_pipeline.objectstore.location import BucketLocation  # pyarrow: only when a bucket is set

            BucketLocation.from_url(self.object_store)
        if self.s3_endpoint:
            _check_url("s3_endpoint", self.s3_endpoint, ("http", "https"))
        if self.segment_max_age_s <= 0:
            raise ValueError(f"segment_max_age_s must be positive, not {self.segment_max_age_s}")
        try:
            dt.date.fromisoformat(self.start_date)
        except ValueError:
            raise ValueError(f"start_date must be a date like 2026-01-01, not {self.start_date!r}") from None
        if self.dagster_storage is not None:
            from harvest_pipeline.dagster_home import validate_storage_url  # SQLAlchemy: only when a URL is given

            validate_storage_url(self.dagster_storage)
        if not self.ui_allow_remote and not is_loopback(self.ui_host):
            raise ValueError(
                f"ui_host {self.ui_host!r} is not a loopback address: the Dagster UI has no authentication. Keep it on "
                "127.0.0.1 behind the authenticated reverse proxy (docs/deployment.md), or pass --ui-allow-remote "
                "(HARVEST_UI_ALLOW_REMOTE=true) to expose it anyway"
            )

    @property
    def exchange(self) -> Market:
        """The market recorded (``market`` looked up)."""
        return market(self.market)

    @property
    def symbol_selection(self) -> SymbolSelection:
        """The ``symbols`` setting parsed: explicit symbols and selectors (resolved by the collector only)."""
        return SymbolSelection.parse(self.symbols or ())

    @property
    def explicit_symbols(self) -> tuple[str, ...]:
        """The symbols named explicitly (recorded whatever the exchange lists); none for ``top:5`` or ``all``."""
        return self.symbol_selection.explicit

    def paths(self) -> DataPaths:
        """The installation's directories: the data root, with any area moved on its own."""
        base = DataPaths.from_root(self.data_root)

        def area(value: str | None, default: Path) -> Path:
            return Path(value).resolve() if value else default

        return DataPaths(
            root=base.root,
            segments=area(self.segments_dir, base.segments),
            parquet=area(self.parquet_dir, base.parquet),
            quarantine=area(self.quarantine_dir, base.quarantine),
            dagster_home=area(self.dagster_home, base.dagster_home),
        )

    def write(self, path: Path) -> None:
        """Write these settings, resolved, as JSON (atomically) for child processes to load."""
        values = dataclasses.asdict(self)
        values["data_root"] = str(self.paths().root)
        write_json_atomically(path, values)
        if self.dagster_storage is not None:
            path.chmod(0o600)  # the storage URL may hold a password


def env_name(field_name: str) -> str:
    """The environment variable that overrides a setting."""
    return ENV_NAMES_OUTSIDE_THE_PREFIX.get(field_name, f"HARVEST_{field_name.upper()}")


SETTINGS_ENV_NAMES = frozenset(env_name(f.name) for f in dataclasses.fields(InstallationSettings))
"""Every environment variable that overrides an installation setting (``up`` keeps them from its children)."""


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    settings_file: str | os.PathLike[str] | None = None,
) -> InstallationSettings:
    """Defaults < settings file < ``HARVEST_*`` environment < ``flags`` (``None`` flag values are ignored).

    ``settings_file`` defaults to ``$HARVEST_SETTINGS_FILE``. Raises ``ValueError`` naming the setting, its value and
    where the value came from.
    """
    env = os.environ if environ is None else environ
    layers: list[tuple[str, Mapping[str, Any]]] = []
    file = settings_file or env.get(SETTINGS_FILE_ENV)
    if file:
        layers.append((f"settings file {file}", read_settings_file(Path(file))))
    fields = {f.name for f in dataclasses.fields(InstallationSettings)}
    layers.append(("environment", {name: env[env_name(name)] for name in fields if env.get(env_name(name))}))
    layers.append(("flags", {name: value for name, value in (flags or {}).items() if value is not None}))
    values: dict[str, Any] = {}
    for origin, layer in layers:
        for name, value in layer.items():
            values[name] = None if value is None else _convert(name, value, origin)
    try:
        return InstallationSettings(**values)
    except ValueError as exc:
        sources = ", ".join(f"{origin}" for origin, layer in layers if layer)
        raise ValueError(f"invalid harvest settings ({sources or 'defaults'}): {exc}") from None


def read_settings_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML (``.toml``) or JSON file; unknown keys are an error, so a typo is never ignored."""
    try:
        text = path.read_text()
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read settings file {path}: {exc}") from None
    if not isinstance(values, dict):
        raise ValueError(f"settings file {path} must hold a table of settings")
    known = {f.name for f in dataclasses.fields(InstallationSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"settings file {path}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return values


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (``localhost`` or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_TYPES = {f.name: str(f.type) for f in dataclasses.fields(InstallationSettings)}


def _convert(name: str, value: Any, origin: str) -> Any:
    """``value`` (text from the environment or a flag, or a TOML/JSON value) as the type of setting ``name``."""
    if name not in _TYPES:
        raise ValueError(f"unknown harvest setting {name!r} ({origin})")
    type_name = _TYPES[name]
    try:
        if type_name.startswith("tuple"):  # the symbols: selectors lower case, symbols upper case
            parts = value.split(",") if isinstance(value, str) else list(value)
            return tuple(canonical_entry(str(part)) for part in parts if str(part).strip())
        if type_name == "bool":
            return to_bool(value)
        if type_name == "int" and not isinstance(value, bool):
            return int(value)
        if type_name == "float" and not isinstance(value, bool):
            return float(value)
        if type_name.startswith("str") and isinstance(value, str | os.PathLike):
            return str(value)
    except (TypeError, ValueError):
        pass
    raise ValueError(f"harvest setting {name}={value!r} ({origin}, {env_name(name)}) is not a valid {type_name}")


def to_bool(value: Any) -> bool:
    """``value`` as a bool: a bool, or text 1/true/yes/on or 0/false/no/off (any case); else ``ValueError``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _check_url(name: str, url: str, schemes: tuple[str, ...]) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"{name} must be a {'/'.join(schemes)}:// URL with a host, not {url!r}")


def _check_port(name: str, port: int, lowest: int) -> None:
    if not lowest <= port <= 65535:
        raise ValueError(f"{name} must be a TCP port {lowest}-65535, not {port}")

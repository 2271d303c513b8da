"""The three Binance markets harvest records, and everything that differs between them, in one table.

- ``usdm``: USDⓈ-M futures (``fstream`` / ``/fapi/v1``). Streams routed by path since 2026-04-23 (``/public``,
  ``/market``); depth diffs name their predecessor with ``pu``.
- ``coinm``: COIN-M futures (``dstream`` / ``/dapi/v1``). The same messages as USDⓈ-M plus the pair ``ps``; quantities
  are contracts; symbols carry the contract (``BTCUSD_PERP``); listings say ``contractStatus``; unrouted
  ``/stream`` endpoint.
- ``spot``: spot (``stream.binance.com:9443`` / ``/api/v3``). No ``pu``: a diff continues the chain when its ``U`` is
  the previous ``u`` + 1 (compaction stores ``U - 1`` as ``prev_final_update_id``, so one rule serves every market
  downstream). ``bookTicker`` and the REST depth snapshot carry no time (their event time is the receive time),
  depth diffs no transaction time (it reads as the event time). No mark price, liquidations or open interest.

One collector records one market (``--market``); Dagster compacts every market's segments, each into its own Parquet
root ``parquet/market=<name>/date=/symbol=/kind=``. A Dagster symbol partition names the market unless it is
USDⓈ-M: ``BTCUSDT`` (USDⓈ-M, as before markets existed), ``spot:BTCUSDT``, ``coinm:BTCUSD_PERP``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DepthChain = Literal["pu", "first_id"]
"""How a depth diff names the diff before it: ``pu`` (its ``pu`` is the previous ``u``) or ``first_id`` (its ``U``
is the previous ``u`` + 1)."""

PARTITION_SEPARATOR = ":"


@dataclass(frozen=True)
class Market:
    """One Binance market: its endpoints and the ways its messages and REST answers differ."""

    name: str
    title: str
    ws_base: str
    rest_base: str
    rest_prefix: str
    """Path prefix of every REST endpoint (``/fapi/v1``, ``/dapi/v1``, ``/api/v3``)."""
    routed: bool
    """Streams are served by route (``/public/stream``, ``/market/stream``), not on one ``/stream``."""
    depth_chain: DepthChain
    snapshot_limit: int
    """Levels asked of REST depth (the deepest the market serves)."""
    snapshot_weight: int
    """Request weight of one depth snapshot at ``snapshot_limit``."""
    weight_per_minute: int
    """The exchange's request-weight limit per IP and minute."""
    listing_status_key: str
    """exchangeInfo field of a symbol's trading status (``TRADING`` when it trades)."""
    volume_key: str
    """``ticker/24hr`` field ranking symbols for ``top:N`` (quote volume; COIN-M has only base volume)."""
    stream_kinds: tuple[str, ...]
    """Stream kinds the market serves."""
    default_stream_kinds: tuple[str, ...]
    """What the collector records unless told otherwise."""
    has_open_interest: bool
    default_symbols: tuple[str, ...]
    """Symbols a fresh installation records, and the simulator lists first."""
    dialect: Literal["futures", "spot"]
    """Message layouts: ``futures`` (USDⓈ-M's, which COIN-M shares plus ``ps``) or ``spot`` (no ``pu``, no ``T``,
    ``bookTicker`` and REST depth without any time): compaction reads each with its own SQL."""

    def rest_path(self, endpoint: str) -> str:
        """The path of a REST endpoint: ``rest_path("depth")`` is ``/fapi/v1/depth`` on USDⓈ-M."""
        return f"{self.rest_prefix}/{endpoint}"

    def parquet_root(self, parquet: Path) -> Path:
        """This market's Parquet root under the installation's Parquet area."""
        return parquet / f"market={self.name}"

    def partition_key(self, symbol: str) -> str:
        """The Dagster symbol partition of ``symbol`` on this market."""
        return symbol if self.name == USDM.name else f"{self.name}{PARTITION_SEPARATOR}{symbol}"


_FUTURES_KINDS = ("aggTrade", "trade", "depth@100ms", "bookTicker", "markPrice@1s", "forceOrder", "kline_1m")
_FUTURES_DEFAULTS = ("aggTrade", "depth@100ms", "bookTicker", "markPrice@1s", "forceOrder", "kline_1m")

USDM = Market(
    name="usdm",
    title="USDⓈ-M futures",
    ws_base="wss://fstream.binance.com",
    rest_base="https://fapi.binance.com",
    rest_prefix="/fapi/v1",
    routed=True,
    depth_chain="pu",
    snapshot_limit=1000,
    snapshot_weight=20,
    weight_per_minute=2400,
    listing_status_key="status",
    volume_key="quoteVolume",
    stream_kinds=_FUTURES_KINDS,
    default_stream_kinds=_FUTURES_DEFAULTS,
    has_open_interest=True,
    default_symbols=("BTCUSDT",),
    dialect="futures",
)
COINM = dataclasses.replace(
    USDM,
    name="coinm",
    title="COIN-M futures",
    ws_base="wss://dstream.binance.com",
    rest_base="https://dapi.binance.com",
    rest_prefix="/dapi/v1",
    routed=False,
    listing_status_key="contractStatus",
    volume_key="baseVolume",
    default_symbols=("BTCUSD_PERP",),
)
"""USDⓈ-M's messages and rules on other hosts, unrouted, with COIN-M's listing and volume fields."""
SPOT = Market(
    name="spot",
    title="spot",
    ws_base="wss://stream.binance.com:9443",
    rest_base="https://api.binance.com",
    rest_prefix="/api/v3",
    routed=False,
    depth_chain="first_id",
    snapshot_limit=5000,
    snapshot_weight=250,
    weight_per_minute=6000,
    listing_status_key="status",
    volume_key="quoteVolume",
    stream_kinds=("aggTrade", "trade", "depth@100ms", "bookTicker", "kline_1m"),
    default_stream_kinds=("aggTrade", "depth@100ms", "bookTicker", "kline_1m"),
    has_open_interest=False,
    default_symbols=("BTCUSDT",),
    dialect="spot",
)

MARKETS: dict[str, Market] = {market.name: market for market in (USDM, COINM, SPOT)}
DEFAULT_MARKET = USDM.name


def market(name: str) -> Market:
    """The market called ``name``, else ``ValueError`` listing the known ones."""
    try:
        return MARKETS[name]
    except KeyError:
        raise ValueError(f"unknown market {name!r}: expected one of {', '.join(MARKETS)}") from None


def split_partition_key(key: str) -> tuple[Market, str]:
    """The market and symbol of a Dagster symbol partition (``BTCUSDT`` is USDⓈ-M, ``spot:BTCUSDT`` spot)."""
    name, separator, symbol = key.partition(PARTITION_SEPARATOR)
    if not separator:
        return USDM, key
    if name == USDM.name:
        raise ValueError(f"symbol partition {key!r}: USDⓈ-M partitions are the bare symbol ({symbol})")
    return market(name), symbol

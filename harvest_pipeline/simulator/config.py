"""The simulator's settings: one typed object with defaults, filled from keyword arguments or the command line."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harvest_pipeline.markets import DEFAULT_MARKET, market
from harvest_pipeline.simulator.instruments import default_symbols, instrument
from harvest_pipeline.simulator.latency import DEFAULT_PUBLISH_LATENCY_MS, LatencySetting, latency_quantiles
from harvest_pipeline.simulator.market import LIQUIDATION_SHARE


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything that shapes a simulator run. Times are seconds; ``rate`` 1.0 is a normal busy market."""

    market: str = DEFAULT_MARKET
    """The Binance market served (``usdm``, ``coinm``, ``spot``: ``harvest_pipeline.markets``); one per process."""
    symbols: tuple[str, ...] = ()
    """Symbols trading from the start; none given: every instrument of the market's catalogue."""
    seed: int = 1
    rate: float = 1.0
    ping_interval_s: float = 180.0
    ping_timeout_s: float = 600.0
    max_lifetime_s: float = 86400.0
    send_queue_frames: int = 10_000
    """Frames waiting for one client; a client whose queue is full is dropped as too slow."""
    send_buffer_bytes: int | None = None
    """Kernel send buffer (SO_SNDBUF) per client socket; None keeps the OS default (which grows to megabytes)."""
    weight_limit_per_minute: int = 0
    """REST request weight per minute; 0: the market's limit (``Market.weight_per_minute``)."""
    host: str = "127.0.0.1"
    port: int = 0
    admin_port: int = 0
    faults: tuple[Mapping[str, Any], ...] = ()
    """Faults applied at start (the same dicts ``POST /admin/fault`` takes)."""
    agg_trade_history: int = 100_000
    """Aggregate trades kept per symbol for REST ``aggTrades``."""
    agg_trade_horizon_s: float | None = None
    """Aggregate trades whose trade time is older than this are no longer served; None keeps them (up to the count)."""
    book_history_s: float = 600.0
    """How many seconds back ``GET /admin/book`` answers the true order book (at every depth diff boundary)."""
    clock_offset_ms: int = 0
    """The exchange's clock (event times, ids, REST times) runs this far ahead of the wall clock: lets a test record
    across UTC midnight now."""
    liquidation_share: float = LIQUIDATION_SHARE
    """Share of the market orders that are liquidations (reported on ``@forceOrder``, at most one per second)."""
    replay: tuple[Path, ...] = ()
    """Segments to replay instead of running the market model."""
    replay_speed: float = 1.0
    publish_latency_ms: LatencySetting = DEFAULT_PUBLISH_LATENCY_MS
    """Matching to publishing (``E - T``): ``median`` or ``(median, p99)`` ms, with rare bursts; 0: ``E == T``
    (``harvest_pipeline.simulator.latency``)."""
    tls: bool = False
    """Serve websockets and REST over TLS (``wss://``, ``https://``) with a self-signed certificate for 127.0.0.1 and
    localhost, made at start (``Simulator.ca_file``); the admin API stays plain HTTP."""

    def exchange_ms(self) -> int:
        """The exchange's clock: wall-clock milliseconds plus ``clock_offset_ms``."""
        return time.time_ns() // 1_000_000 + self.clock_offset_ms

    def __post_init__(self) -> None:
        served = market(self.market)
        symbols = self.symbols or default_symbols(served.name)
        object.__setattr__(self, "symbols", tuple(instrument(symbol, served.name).symbol for symbol in symbols))
        if self.weight_limit_per_minute < 0:
            raise ValueError(
                f"weight_limit_per_minute must be >= 0 (0: the market's), got {self.weight_limit_per_minute}"
            )
        object.__setattr__(self, "weight_limit_per_minute", self.weight_limit_per_minute or served.weight_per_minute)
        if self.rate < 0:
            raise ValueError(f"rate must be >= 0, got {self.rate}")
        if self.replay_speed <= 0:
            raise ValueError(f"replay speed must be > 0, got {self.replay_speed}")
        if self.agg_trade_history < 1:
            raise ValueError(f"agg_trade_history must be >= 1, got {self.agg_trade_history}")
        if self.agg_trade_horizon_s is not None and self.agg_trade_horizon_s <= 0:
            raise ValueError(f"agg_trade_horizon_s must be > 0, got {self.agg_trade_horizon_s}")
        if self.book_history_s <= 0:
            raise ValueError(f"book_history_s must be > 0, got {self.book_history_s}")
        if not 0 <= self.liquidation_share <= 1:
            raise ValueError(f"liquidation_share must be within 0..1, got {self.liquidation_share}")
        latency_quantiles(self.publish_latency_ms)
        if self.send_queue_frames < 1:
            raise ValueError(f"send_queue_frames must be >= 1, got {self.send_queue_frames}")

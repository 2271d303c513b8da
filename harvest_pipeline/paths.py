"""Where harvest keeps its data: one data root, and every area derived from it.

The data root and the areas are installation settings (``harvest_pipeline.settings``: ``data_root``, default
``./data``, ``HARVEST_DATA_ROOT``; each area can be moved on its own, e.g. Parquet on a bigger disk). The collector,
Dagster and the CLI all resolve paths here, so they can never disagree about where a segment or a Parquet file lives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harvest_pipeline.markets import DEFAULT_MARKET, market

DATA_ROOT_ENV = "HARVEST_DATA_ROOT"
DAGSTER_HOME_ENV = "DAGSTER_HOME"


@dataclass(frozen=True)
class DataPaths:
    """The directories of one harvest installation."""

    root: Path
    segments: Path
    parquet: Path
    quarantine: Path
    dagster_home: Path

    def market_parquet(self, market_name: str = DEFAULT_MARKET) -> Path:
        """The Parquet root of one market: ``<parquet>/market=<name>`` (``harvest_pipeline.markets``)."""
        return market(market_name).parquet_root(self.parquet)

    @property
    def open_segments(self) -> Path:
        """Segments being written by a collector (mutable, never read by Dagster)."""
        return self.segments / "open"

    @property
    def sealed_segments(self) -> Path:
        """Sealed, immutable segments, in ``date=YYYY-MM-DD`` folders by seal-start receive date."""
        return self.segments / "sealed"

    @classmethod
    def from_root(cls, root: str | os.PathLike[str]) -> DataPaths:
        """All areas under one root, ignoring environment overrides (tests and explicit ``--data`` flags)."""
        base = Path(root).resolve()
        return cls(base, base / "segments", base / "parquet", base / "quarantine", base / "dagster_home")

    @classmethod
    def from_env(cls, root: str | os.PathLike[str] | None = None) -> DataPaths:
        """The installation's paths (settings file, ``HARVEST_*`` environment), ``root`` overriding the data root."""
        from harvest_pipeline.settings import load_settings  # the settings build DataPaths: imported late, no cycle

        return load_settings({"data_root": root}).paths()

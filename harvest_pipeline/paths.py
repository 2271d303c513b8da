"""Where harvest keeps its data: one data root, and every area derived from it.

The data root defaults to ``./data`` and is overridden by ``HARVEST_DATA_ROOT``; each area can be moved on its own
with the variables below (e.g. Parquet on a bigger disk). The collector, Dagster and the CLI all resolve paths here,
so they can never disagree about where a segment or a Parquet file lives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_ROOT_ENV = "HARVEST_DATA_ROOT"
SEGMENTS_ENV = "HARVEST_SEGMENTS_DIR"
PARQUET_ENV = "HARVEST_PARQUET_DIR"
QUARANTINE_ENV = "HARVEST_QUARANTINE_DIR"
DAGSTER_HOME_ENV = "DAGSTER_HOME"


@dataclass(frozen=True)
class DataPaths:
    """The directories of one harvest installation."""

    root: Path
    segments: Path
    parquet: Path
    quarantine: Path
    dagster_home: Path

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
        """The configured paths: ``root`` (or ``HARVEST_DATA_ROOT``, or ``./data``) with per-area env overrides."""
        defaults = cls.from_root(root or os.environ.get(DATA_ROOT_ENV) or "data")

        def pick(env: str, default: Path) -> Path:
            value = os.environ.get(env)
            return Path(value).resolve() if value else default

        return cls(
            root=defaults.root,
            segments=pick(SEGMENTS_ENV, defaults.segments),
            parquet=pick(PARQUET_ENV, defaults.parquet),
            quarantine=pick(QUARANTINE_ENV, defaults.quarantine),
            dagster_home=pick(DAGSTER_HOME_ENV, defaults.dagster_home),
        )

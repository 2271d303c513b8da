"""The one Dagster resource that says where harvest's data lives."""

from __future__ import annotations

import dagster as dg

from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import LOCAL_FS, FileSystem


class HarvestStorage(dg.ConfigurableResource):
    """Data root and areas; unset fields fall back to ``HARVEST_*`` env vars, then to ``./data``.

    Every asset, sensor and check resolves paths through ``paths()`` so a run and the collector agree on locations.
    """

    data_root: str | None = None
    segments_dir: str | None = None
    parquet_dir: str | None = None
    quarantine_dir: str | None = None

    def paths(self) -> DataPaths:
        """The resolved directories (explicit fields win over environment variables)."""
        base = DataPaths.from_env(self.data_root)
        return DataPaths(
            root=base.root,
            segments=DataPaths.from_root(self.segments_dir).root if self.segments_dir else base.segments,
            parquet=DataPaths.from_root(self.parquet_dir).root if self.parquet_dir else base.parquet,
            quarantine=DataPaths.from_root(self.quarantine_dir).root if self.quarantine_dir else base.quarantine,
            dagster_home=base.dagster_home,
        )

    def output_fs(self) -> FileSystem:
        """File operations for Parquet and quarantine writes; a subclass can inject faults (retry tests)."""
        return LOCAL_FS

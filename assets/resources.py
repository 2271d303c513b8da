"""The one Dagster resource that says where harvest's data lives."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from harvest_pipeline.markets import Market
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import LOCAL_FS, FileSystem
from harvest_pipeline.settings import SETTINGS_FILE_ENV, InstallationSettings, env_name, load_settings
from harvest_pipeline.store.migration import move_legacy_layout

DEPLOYMENT_FIELDS = ("settings_file", "data_root", "segments_dir", "parquet_dir", "quarantine_dir")


class HarvestStorage(dg.ConfigurableResource):
    """Data root and areas of the installation; unset fields come from the installation settings.

    Every asset, sensor and check resolves paths through ``paths()`` so a run and the collector agree on locations.
    ``HarvestStorage.from_deployment()`` backs each field by its ``dg.EnvVar`` (``HARVEST_SETTINGS_FILE``,
    ``HARVEST_DATA_ROOT`` …) when the deployment sets it, so the UI shows where a value comes from.
    """

    settings_file: str | None = None
    data_root: str | None = None
    segments_dir: str | None = None
    parquet_dir: str | None = None
    quarantine_dir: str | None = None

    @classmethod
    def from_deployment(cls, environ: Mapping[str, str] | None = None) -> HarvestStorage:
        """A resource whose fields are ``dg.EnvVar``s for the variables this deployment sets (others: settings)."""
        env = os.environ if environ is None else environ
        backed = {name: dg.EnvVar(_env_of(name)) for name in DEPLOYMENT_FIELDS if env.get(_env_of(name))}
        return cls(**backed)

    def settings(self) -> InstallationSettings:
        """The installation settings, with this resource's explicit fields winning."""
        flags = {name: getattr(self, name) for name in DEPLOYMENT_FIELDS if name != "settings_file"}
        return load_settings(flags, settings_file=self.settings_file)

    def paths(self) -> DataPaths:
        """The resolved directories (explicit fields win over the environment and the settings file)."""
        return self.settings().paths()

    def parquet_root(self, market: Market) -> Path:
        """``market``'s Parquet root, after moving a store from before markets existed into the USDⓈ-M root
        (``harvest_pipeline.store.migration``: one directory listing when there is nothing to move)."""
        parquet = self.paths().parquet
        move_legacy_layout(parquet)
        return market.parquet_root(parquet)

    def output_fs(self) -> FileSystem:
        """File operations for Parquet and quarantine writes; a subclass can inject faults (retry tests)."""
        return LOCAL_FS


def _env_of(field_name: str) -> str:
    return SETTINGS_FILE_ENV if field_name == "settings_file" else env_name(field_name)

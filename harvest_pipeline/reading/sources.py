"""Where a ``Store`` finds its files: the local Parquet root, or the installation's bucket through its manifests.

Both answer the same questions (markets, dates, symbols, the visible files of one date x symbol x kind, a file's
schema), and hand DuckDB file names it can read: local paths, or ``s3://bucket/key`` URLs served by pyarrow's S3
filesystem registered on the store's DuckDB connection (DuckDB's own ``httpfs`` extension is not needed). A bucket
folder is read only through its manifest (``store.publish``): what a publication has not finished is invisible.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from harvest_pipeline.markets import Market
from harvest_pipeline.objectstore import ObjectStore
from harvest_pipeline.store.layout import kind_dir, visible_files
from harvest_pipeline.store.publish import PARQUET_OBJECT_FOLDER, read_manifest


class FileSource(Protocol):
    """What ``Store`` reads through."""

    def markets(self) -> list[str]: ...
    def dates(self, market: Market) -> list[dt.date]: ...
    def symbols(self, market: Market) -> set[str]: ...
    def visible(self, market: Market, day: dt.date, symbol: str, kind_folder: str) -> list[str]: ...
    def schema(self, file: str) -> pa.Schema: ...


def _prefixed(names: list[str], prefix: str) -> list[str]:
    return [name.removeprefix(prefix) for name in names if name.startswith(prefix)]


class LocalSource:
    """The Parquet store on local disk."""

    def __init__(self, parquet_root: Path):
        self.parquet_root = parquet_root

    def __repr__(self) -> str:
        return repr(str(self.parquet_root))

    def markets(self) -> list[str]:
        return sorted(p.name.removeprefix("market=") for p in self.parquet_root.glob("market=*") if p.is_dir())

    def dates(self, market: Market) -> list[dt.date]:
        root = market.parquet_root(self.parquet_root)
        return sorted(dt.date.fromisoformat(p.name.removeprefix("date=")) for p in root.glob("date=*") if p.is_dir())

    def symbols(self, market: Market) -> set[str]:
        root = market.parquet_root(self.parquet_root)
        return {p.name.removeprefix("symbol=") for p in root.glob("date=*/symbol=*") if p.is_dir()}

    def visible(self, market: Market, day: dt.date, symbol: str, kind_folder: str) -> list[str]:
        return [
            str(p) for p in visible_files(kind_dir(market.parquet_root(self.parquet_root), day, symbol, kind_folder))
        ]

    def schema(self, file: str) -> pa.Schema:
        return pq.read_schema(file)


def duckdb_filesystem(store: ObjectStore) -> object:
    """pyarrow's S3 filesystem of ``store`` as the fsspec filesystem DuckDB's ``register_filesystem`` takes, for
    ``s3://`` URLs."""
    from fsspec.implementations.arrow import ArrowFSWrapper  # type: ignore[import-untyped]

    class S3Wrapper(ArrowFSWrapper):
        protocol = "s3"

    return S3Wrapper(store.fs)


class BucketSource:
    """The Parquet store published to a bucket (``store.publish``), read through its manifests."""

    def __init__(self, store: ObjectStore, connection: duckdb.DuckDBPyConnection):
        self.store = store
        connection.register_filesystem(duckdb_filesystem(store))

    def __repr__(self) -> str:
        return repr(f"{self.store.location.url}/{PARQUET_OBJECT_FOLDER}")

    def _folder(self, market: Market) -> str:
        return f"{PARQUET_OBJECT_FOLDER}/market={market.name}"

    def markets(self) -> list[str]:
        return _prefixed(self.store.folders(PARQUET_OBJECT_FOLDER), "market=")

    def dates(self, market: Market) -> list[dt.date]:
        return sorted(dt.date.fromisoformat(d) for d in _prefixed(self.store.folders(self._folder(market)), "date="))

    def symbols(self, market: Market) -> set[str]:
        found: set[str] = set()
        for day in self.dates(market):
            found |= set(_prefixed(self.store.folders(f"{self._folder(market)}/date={day}"), "symbol="))
        return found

    def visible(self, market: Market, day: dt.date, symbol: str, kind_folder: str) -> list[str]:
        folder = f"{self._folder(market)}/date={day}/symbol={symbol}/kind={kind_folder}"
        return [f"s3://{self.store.location.key(name)}" for name in read_manifest(self.store, folder) or []]

    def schema(self, file: str) -> pa.Schema:
        return pq.read_schema(file.removeprefix("s3://"), filesystem=self.store.fs)

"""Which Parquet files a day's completeness certificate reads, and how they appear inside a DuckDB connection.

A certificate of one day x symbol reads the visible files (``store.visible_files``: parts plus day file) of
- that day's ``prices``, ``orderbook`` and ``depth_snapshot``;
- the day before's ``prices`` and ``orderbook`` (their last ids anchor the day's sequences), ``depth_snapshot`` (a
  snapshot fetched just before midnight may synchronise the day's first diffs) and ``completeness`` (was the book
  synchronised at midnight?);
- the ``events`` of the day and both neighbours, of the symbol and of ``symbol=ALL`` (``features.sources.DaySources``).
Any of them may be absent: a view over no files is an empty table of the kind's schema.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb

from harvest_pipeline.features.sources import DaySources, register_parquet_view
from harvest_pipeline.store import kind_dir, read_parquet_sql, visible_files

COMPLETENESS_KIND = "completeness"
CERTIFICATE_FILE = "completeness.parquet"


def certificate_path(parquet_root: Path, day: dt.date, symbol: str) -> Path:
    """Where the certificate of one day x symbol lives: ``date=/symbol=/kind=completeness/completeness.parquet``."""
    return kind_dir(parquet_root, day, symbol, COMPLETENESS_KIND) / CERTIFICATE_FILE


@dataclass(frozen=True)
class CertificateSources:
    """The files behind the certificate of one day x symbol (see the module docstring)."""

    day: dt.date
    symbol: str
    prices: list[Path]
    prices_before: list[Path]
    orderbook: list[Path]
    orderbook_before: list[Path]
    snapshots: list[Path]
    events: list[Path]
    certificate_before: list[Path]

    @classmethod
    def discover(cls, parquet_root: Path, day: dt.date, symbol: str) -> CertificateSources:
        """List the visible files of every input (nothing is read yet)."""
        before = day - dt.timedelta(days=1)

        def files(on: dt.date, kind: str) -> list[Path]:
            return visible_files(kind_dir(parquet_root, on, symbol, kind))

        return cls(
            day=day,
            symbol=symbol,
            prices=files(day, "prices"),
            prices_before=files(before, "prices"),
            orderbook=files(day, "orderbook"),
            orderbook_before=files(before, "orderbook"),
            snapshots=files(before, "depth_snapshot") + files(day, "depth_snapshot"),
            events=DaySources.discover(parquet_root, day, symbol).events,
            certificate_before=files(before, COMPLETENESS_KIND),
        )

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Expose the inputs as views ``prices_day``, ``prices_before``, ``orderbook_day``, ``orderbook_before``,
        ``depth_snapshots`` and ``events_raw``, each with exactly its kind's columns (``prices`` files written before
        ``source`` existed read as ``ws``)."""
        for view, files, kind in (
            ("prices_day", self.prices, "prices"),
            ("prices_before", self.prices_before, "prices"),
            ("orderbook_day", self.orderbook, "orderbook"),
            ("orderbook_before", self.orderbook_before, "orderbook"),
            ("depth_snapshots", self.snapshots, "depth_snapshot"),
            ("events_raw", self.events, "events"),
        ):
            register_parquet_view(con, view, files, kind)

    def book_synced_before(self, con: duckdb.DuckDBPyConnection, depth_sequence: str) -> bool:
        """Whether the day before's certificate says its book was synchronised at its end (False without one)."""
        if not self.certificate_before:
            return False
        [(synced,)] = con.execute(
            f"SELECT bool_or(book_synced_at_end) FROM {read_parquet_sql(self.certificate_before)} WHERE sequence = ?",
            [depth_sequence],
        ).fetchall()
        return bool(synced)

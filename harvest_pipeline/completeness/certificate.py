"""The completeness certificate of one UTC day x symbol: build it from the visible Parquet, store it beside them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa

from harvest_pipeline.completeness.depth import DEPTH_SEQUENCE, depth_certificate
from harvest_pipeline.completeness.sources import CertificateSources, certificate_path
from harvest_pipeline.completeness.trades import trade_certificate
from harvest_pipeline.schema import COMPLETENESS
from harvest_pipeline.store import write_parquet_atomically


def build_certificate(parquet_root: Path, day: dt.date, symbol: str, threads: int | None = None) -> pa.Table:
    """The ``COMPLETENESS`` table of ``symbol`` on UTC ``day``: one row per sequenced stream that has rows that day
    (aggTrade, diff depth), sorted by stream; empty when it has none. Reads whatever Parquet is visible now, so build
    days in order: a day's book chain continues the day before's certificate (docs/completeness.md)."""
    sources = CertificateSources.discover(parquet_root, day, symbol)
    con = duckdb.connect(config={"threads": threads} if threads else {})
    try:
        sources.register(con)
        synced_before = sources.book_synced_before(con, DEPTH_SEQUENCE)
        rows = [trade_certificate(con, symbol), depth_certificate(con, symbol, synced_before)]
    finally:
        con.close()
    found = sorted((row for row in rows if row is not None), key=lambda row: row["stream"])
    return pa.Table.from_pylist(found, schema=COMPLETENESS)


def write_certificate(table: pa.Table, parquet_root: Path, day: dt.date, symbol: str) -> Path:
    """Store ``table`` as ``kind=completeness/completeness.parquet`` of the day x symbol, atomically (readers see
    the old certificate or the new one); returns its path."""
    if not table.schema.equals(COMPLETENESS):
        raise ValueError(f"cannot write the certificate of {symbol} on {day}: its schema is not schema.COMPLETENESS")
    target = certificate_path(parquet_root, day, symbol)
    write_parquet_atomically(table, target)
    return target

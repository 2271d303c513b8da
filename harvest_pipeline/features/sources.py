"""Which Parquet files feed one UTC day x symbol, and how they appear inside a DuckDB connection.

The raw kinds (trades, bookTicker, the ledger) and the reconstructed book ``book_1s`` (one file per day x symbol,
written by ``harvest_pipeline.book``; absent when the day was not built or no depth stream was recorded).
Readers glob ``kind=KIND/*.parquet`` only. Consolidation keeps that directory holding either the per-segment parts or
one consolidated day file (plus parts that arrived after it), never both versions of the same rows, so the glob never
double counts (see ``consolidation``). Part files may still overlap each other (a row seen by two connections), so
every reader here deduplicates by exchange id as well.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from harvest_pipeline.schema import ALL_SYMBOLS, BOOK_1S, RAW_KINDS
from harvest_pipeline.store import kind_dir, kind_select_sql, read_parquet_sql, visible_files

MS_PER_DAY = 86_400_000
BOOK_KIND = "book_1s"


def day_start_ms(day: dt.date) -> int:
    """Epoch milliseconds of 00:00:00 UTC on ``day``."""
    return int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp() * 1000)


@dataclass(frozen=True)
class DaySources:
    """The files behind one day x symbol: trades, L1 book, the feed ledger (symbol's and connection-wide), the
    reconstructed book, mark prices, liquidations and open interest."""

    day: dt.date
    symbol: str
    prices: list[Path]
    bookticker: list[Path]
    events: list[Path]
    book: list[Path]
    mark_price: list[Path]
    liquidations: list[Path]
    open_interest: list[Path]

    @classmethod
    def discover(cls, parquet_root: Path, day: dt.date, symbol: str) -> DaySources:
        """Find the files; events come from the day before and after too: a gap may straddle midnight, and the day
        before tells whether a connection was still open at midnight (``recorded``)."""
        event_days = [day - dt.timedelta(days=1), day, day + dt.timedelta(days=1)]
        events = [
            path
            for event_day in event_days
            for owner in (symbol, ALL_SYMBOLS)
            for path in visible_files(kind_dir(parquet_root, event_day, owner, "events"))
        ]
        return cls(
            day=day,
            symbol=symbol,
            prices=visible_files(kind_dir(parquet_root, day, symbol, "prices")),
            bookticker=visible_files(kind_dir(parquet_root, day, symbol, "bookticker")),
            events=events,
            book=visible_files(kind_dir(parquet_root, day, symbol, BOOK_KIND)),
            mark_price=visible_files(kind_dir(parquet_root, day, symbol, "mark_price")),
            liquidations=visible_files(kind_dir(parquet_root, day, symbol, "liquidations")),
            open_interest=visible_files(kind_dir(parquet_root, day, symbol, "open_interest")),
        )

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Expose the files as views ``<kind>_raw`` (``prices``, ``bookticker``, ``events``, ``mark_price``,
        ``liquidations``, ``open_interest``) and ``book_raw``, empty when absent."""
        for view, files, kind in (
            ("prices_raw", self.prices, "prices"),
            ("bookticker_raw", self.bookticker, "bookticker"),
            ("events_raw", self.events, "events"),
            ("mark_price_raw", self.mark_price, "mark_price"),
            ("liquidations_raw", self.liquidations, "liquidations"),
            ("open_interest_raw", self.open_interest, "open_interest"),
        ):
            register_parquet_view(con, view, files, kind)
        register_book_view(con, "book_raw", self.book)


def register_parquet_view(con: duckdb.DuckDBPyConnection, view: str, files: list[Path], kind: str) -> None:
    """Create ``view`` over ``files`` with exactly the columns of ``kind`` (hive columns off: they live in the path;
    files of an older schema version read with the defaults of columns added since), or an empty table of them."""
    if files:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS {kind_select_sql(files, kind)}")
    else:
        _register_empty_view(con, view, RAW_KINDS[kind])


def register_book_view(con: duckdb.DuckDBPyConnection, view: str, files: list[Path]) -> None:
    """Create ``view`` over the ``book_1s`` file(s) with exactly the ``BOOK_1S`` columns, or an empty table of them."""
    if files:
        columns = ", ".join(f'"{name}"' for name in BOOK_1S.names)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {columns} FROM {read_parquet_sql(files)}")
    else:
        _register_empty_view(con, view, BOOK_1S)


def _register_empty_view(con: duckdb.DuckDBPyConnection, view: str, schema: pa.Schema) -> None:
    con.register(f"{view}_empty", schema.empty_table())
    con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {view}_empty")


REFRESH_INPUT_KINDS = (
    "prices",
    "bookticker",
    "events",
    "orderbook",
    "depth_snapshot",
    "mark_price",
    "liquidations",
    "open_interest",
)
"""The raw kinds today's refresh reads: the features' own and the book's (the refresh job rebuilds today's book
first, so ``book_1s`` itself is an output of the refresh, not a trigger)."""


def newest_raw_change_ns(parquet_root: Path, day: dt.date, symbol: str) -> int:
    """Newest modification time (ns) among the visible raw files today's refresh reads for a day x symbol; 0 if
    none."""
    times = [
        path.stat().st_mtime_ns
        for kind in REFRESH_INPUT_KINDS
        for path in visible_files(kind_dir(parquet_root, day, symbol, kind))
    ]
    return max(times, default=0)

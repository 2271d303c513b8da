"""``hp.open(root)``: one line from a notebook to correct tables.

``Store.table(kind, symbols, start, end)`` returns a DuckDB relation (``.to_arrow_table()``, ``.df()``, ``.pl()``,
``.fetchall()``, more SQL) of every row once, across days, with ``date`` and ``symbol``; ``Store.gaps`` lists where
the feed was interrupted and where an id sequence has a hole; ``Store.bars`` aggregates ``features_1s`` into 1m ... 1d
bars. Times: ``harvest_pipeline.reading.times`` (UTC; a date is its whole day). Symbols are a market's
(``BTCUSDT``), or a Dagster symbol partition naming its market (``spot:BTCUSDT``); the market defaults to the
installation's.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable

import duckdb

from harvest_pipeline.features.sql import GAP_WINDOWS
from harvest_pipeline.markets import Market, market, split_partition_key
from harvest_pipeline.objectstore import ObjectStore
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.reading.bars import BAR_INTERVALS, bars_sql
from harvest_pipeline.reading.kinds import READABLE_KINDS, readable_kind
from harvest_pipeline.reading.sources import BucketSource, FileSource, LocalSource
from harvest_pipeline.reading.tables import empty_table, folder_files, table_sql
from harvest_pipeline.reading.times import DAY_MS, TimeArg, TimeRange, time_range
from harvest_pipeline.schema import ALL_SYMBOLS
from harvest_pipeline.store.migration import move_legacy_layout

Symbols = str | Iterable[str] | None


class Store:
    """The Parquet store of one installation, read through one DuckDB connection (``connection``): on local disk
    (``paths``), or published to a bucket (``bucket``, an ``ObjectStore``; ``store.publish``)."""

    def __init__(
        self,
        paths: DataPaths | None,
        default_market: Market,
        connection: duckdb.DuckDBPyConnection | None = None,
        bucket: ObjectStore | None = None,
    ):
        self.paths = paths
        self.market = default_market
        self.connection = connection or duckdb.connect()
        self.source: FileSource
        if bucket is not None:
            self.source = BucketSource(bucket, self.connection)
        else:
            assert paths is not None, "a store reads local paths or a bucket"
            move_legacy_layout(paths.parquet)
            self.source = LocalSource(paths.parquet)

    def __repr__(self) -> str:
        return f"Store({self.source!r}, market={self.market.name!r})"

    def markets(self) -> list[str]:
        """The markets with data in the store."""
        return self.source.markets()

    def dates(self, market_name: str | None = None) -> list[dt.date]:
        """The UTC dates with data of a market (default: the store's)."""
        return self.source.dates(self._market(market_name))

    def symbols(self, market_name: str | None = None) -> list[str]:
        """The symbols with data of a market (default: the store's), ``ALL`` (connection-wide ledger rows) left out."""
        return sorted(self.source.symbols(self._market(market_name)) - {ALL_SYMBOLS})

    def kinds(self) -> list[str]:
        """Every kind ``table`` reads."""
        return list(READABLE_KINDS)

    def table(
        self, kind: str, symbols: Symbols = None, start: TimeArg = None, end: TimeArg = None, market: str | None = None
    ) -> duckdb.DuckDBPyRelation:
        """Every row of ``kind`` for ``symbols`` (default: all the market has) from ``start`` to ``end`` (default: all),
        each once (deduplicated by the kind's identity), with ``date`` and ``symbol``. ``ValueError`` for an unknown
        kind, symbol or market, naming the valid ones."""
        spec = readable_kind(kind)
        sql = self.table_sql(kind, symbols, start, end, market)
        if sql is None:
            return self.connection.from_arrow(empty_table(spec))
        return self.connection.sql(sql)

    def table_sql(
        self, kind: str, symbols: Symbols = None, start: TimeArg = None, end: TimeArg = None, market: str | None = None
    ) -> str | None:
        """The SELECT ``table`` runs, over the files visible now (None when there are none)."""
        spec = readable_kind(kind)
        chosen, names = self._symbols(symbols, market, include_all=spec.folder == "events")
        window = time_range(start, end)
        days = self._days(chosen, window)
        source = self.source

        def visible(day: dt.date, symbol: str, folder: str) -> list[str]:
            return source.visible(chosen, day, symbol, folder)

        folders = folder_files(visible, spec, days, names)
        where = window.sql(spec.time_column) if spec.time_column else "true"
        return table_sql(spec, folders, where, source.schema)

    def gaps(
        self, symbol: str, start: TimeArg = None, end: TimeArg = None, market: str | None = None
    ) -> duckdb.DuckDBPyRelation:
        """Where ``symbol``'s data has holes between ``start`` and ``end``, ordered by time: ``source`` ``feed`` for
        the collector ledger's interruptions (gap, write loss, watchdog, a disconnect until the next connection: the
        windows ``features_1s`` flags as ``gap``), ``certificate`` for each hole of the completeness certificates
        (``cause`` healed / declared / unexplained, with its id range)."""
        chosen, [name] = self._symbols([symbol], market, include_all=False)
        window = time_range(start, end)
        relation = self._gap_rows(chosen, name, window)
        return relation

    def bars(
        self, symbol: str, interval: str, start: TimeArg = None, end: TimeArg = None, market: str | None = None
    ) -> duckdb.DuckDBPyRelation:
        """``features_1s`` of ``symbol`` aggregated into bars of ``interval`` (``1m``, ``5m``, ``15m``, ``1h``,
        ``4h``, ``1d``): open first, high max, low min, close last, volumes and counts summed, VWAP from the sums, CVD
        at the bar's end, OFI summed, the share of seconds in a feed gap and recorded. ``docs/reading.md``."""
        if interval not in BAR_INTERVALS:
            raise ValueError(f"unknown bar interval {interval!r}: expected one of {', '.join(BAR_INTERVALS)}")
        seconds = self.table("features_1s", [symbol], start, end, market)
        bars = seconds.query("seconds", bars_sql("seconds", BAR_INTERVALS[interval]))
        assert bars is not None  # a SELECT always gives a relation
        return bars

    def _gap_rows(self, chosen: Market, symbol: str, window: TimeRange) -> duckdb.DuckDBPyRelation:
        margin = TimeRange(
            None if window.start_ms is None else window.start_ms - DAY_MS,
            None if window.end_ms is None else window.end_ms + DAY_MS,
        )
        events = self.table("events", [symbol, ALL_SYMBOLS], _ms(margin.start_ms), _ms(margin.end_ms), chosen.name)
        certificates = self.table("completeness", [symbol], _ms(window.start_ms), _ms(window.end_ms), chosen.name)
        horizon = window.end_ms if window.end_ms is not None else self._end_of_data_ms(chosen)
        low = window.start_ms if window.start_ms is not None else 0
        con = self.connection
        con.register("gap_events", events.to_arrow_table())
        con.register("gap_certificates", certificates.to_arrow_table())
        try:
            return con.from_arrow(
                con.sql(
                    f"""
                    WITH ledger AS (SELECT DISTINCT * EXCLUDE (date, symbol) FROM gap_events), {GAP_WINDOWS}
                    SELECT 'feed' AS source, event AS kind, stream, reason, lo_ms AS from_ms, hi_ms AS to_ms,
                           NULL::BIGINT AS first_id, NULL::BIGINT AS last_id, count
                    FROM gap_windows WHERE hi_ms >= {low} AND lo_ms < {horizon}
                    UNION ALL
                    SELECT 'certificate', hole.cause, stream, hole.reason, hole.after_time_ms, hole.before_time_ms,
                           hole.first_id, hole.last_id, hole.ids
                    FROM (SELECT stream, unnest(holes) AS hole FROM gap_certificates)
                    ORDER BY from_ms NULLS LAST, source, kind
                    """,
                    params={"day_start": horizon - DAY_MS},
                ).to_arrow_table()
            )
        finally:
            con.unregister("gap_events")
            con.unregister("gap_certificates")

    def _end_of_data_ms(self, chosen: Market) -> int:
        """The end of the store's last day (a disconnect never followed by a connection lasts until then)."""
        dates = self.dates(chosen.name)
        last = dates[-1] + dt.timedelta(days=1) if dates else dt.date(1970, 1, 1)
        return int(dt.datetime.combine(last, dt.time(), tzinfo=dt.UTC).timestamp() * 1000)

    def _market(self, name: str | None) -> Market:
        return self.market if name is None else market(name)

    def _symbols(self, symbols: Symbols, market_name: str | None, include_all: bool) -> tuple[Market, list[str]]:
        """The market and symbols asked for: entries may name their market (``spot:BTCUSDT``); all of one market."""
        entries = [symbols] if isinstance(symbols, str) else list(symbols) if symbols is not None else []
        named: set[str] = set()
        names = []
        for entry in entries:
            if ":" in entry:
                entry_market, name = split_partition_key(entry)
                named.add(entry_market.name)
            else:
                name = entry
            names.append(name)
        asked = named | ({market_name} if market_name is not None else set())
        if len(asked) > 1:
            raise ValueError(f"symbols of one market at a time, not of {', '.join(sorted(asked))}")
        chosen = self._market(asked.pop() if asked else None)
        known = self.symbols(chosen.name)
        if not entries:
            return chosen, known + ([ALL_SYMBOLS] if include_all else [])
        unknown = [name for name in names if name not in known and name != ALL_SYMBOLS]
        if unknown:
            raise ValueError(
                f"unknown symbol(s) {', '.join(unknown)} on {chosen.name}: the store has {', '.join(known) or 'none'}"
            )
        return chosen, names

    def _days(self, chosen: Market, window: TimeRange) -> list[dt.date]:
        dates = self.dates(chosen.name)
        return window.days(dates[0], dates[-1]) if dates else []


def _ms(value: int | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)


def open(root: str | os.PathLike[str] | None = None, market: str | None = None) -> Store:  # noqa: A001 - hp.open
    """The store of the installation at ``root`` (default: the installation settings' data root, ``./data``), read
    for ``market`` unless a call names another (default: the settings' market)."""
    from harvest_pipeline.settings import load_settings

    if root is not None and str(root).startswith("s3://"):
        from harvest_pipeline.objectstore import BucketLocation, ObjectStore, s3_filesystem

        settings = load_settings({"market": market})
        bucket = ObjectStore(BucketLocation.from_url(str(root)), s3_filesystem(settings.s3_endpoint))
        return Store(None, settings.exchange, bucket=bucket)
    settings = load_settings({"data_root": None if root is None else str(root), "market": market})
    return Store(settings.paths(), settings.exchange)

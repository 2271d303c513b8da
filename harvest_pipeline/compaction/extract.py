"""Segment lines -> typed, validated, deduplicated rows per raw kind, with DuckDB JSON paths.

Frames take the fast path (``fast.py``): guessed by their stream name, read with their own kind's paths only. Every
other line, and every fast row that does not count, takes the generic path: parsed once with
``json_extract_string(raw, [paths])`` pulling all keys any kind needs (``kinds.py``), routed by its record kind and
event type. Both run the same SQL per kind (``kinds.checked_sql``), which names every problem of a row; a row with
any is not written and its line is quarantined with them, so one bad value costs one line, never the segment.
Duplicates (the same exchange id on the same stream, e.g. from overlapping connections) keep their first line.

Why DuckDB rather than orjson in Python: on the same 1,000,000-line segment DuckDB extracts several times faster
(figures in docs/compaction.md, measured by bench/compaction.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harvest_pipeline import schema
from harvest_pipeline.compaction import fast
from harvest_pipeline.compaction.kinds import (
    COMBINED_MARK,
    COMBINED_PATHS,
    KINDS,
    MACROS,
    PLAIN_PATHS,
    SLOTS,
    KindSpec,
    checked_sql,
    kinds_for,
    output_sql,
    payload,
    prefix,
)
from harvest_pipeline.markets import USDM, Market

_NO_ROWS = {
    kind: pa.schema(
        [*schema.RAW_KINDS[kind], *(pa.field(name, pa.string()) for name in ("date", "symbol", "stream"))]
    ).empty_table()
    for kind in (spec.kind for spec in KINDS)
}
"""The rows of a kind no line of a segment has."""
_NESTED_KINDS = ("orderbook", "depth_snapshot")
"""Kinds with level lists: their Parquet files take longest to write, so they are handed to the writers first."""


@dataclass
class KindRows:
    """The outcome of one kind: rows to write, how many valid rows were duplicates, and lines to quarantine."""

    table: pa.Table
    """Schema columns plus ``date`` (UTC event date), ``symbol`` and ``stream``."""
    order: np.ndarray
    """Indices that sort ``table`` by date, symbol, event time, id and line (the order of the files)."""
    duplicates: int
    quarantined: list[tuple[int, str]]


@dataclass
class Extraction:
    """All kinds of one segment, plus the lines no data kind took (control records and invalid lines)."""

    kinds: dict[str, KindRows]
    leftover: pa.Table
    """``line``, ``record_kind`` and ``event`` of lines routed to no data kind (control, bad or unknown)."""


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the extraction macros defined."""
    con = duckdb.connect(":memory:")
    con.execute(MACROS)
    return con


def extract_kinds(
    con: duckdb.DuckDBPyConnection,
    lines: pa.Table,
    segment: str,
    on_rows: Callable[[str, KindRows], None] | None = None,
    market: Market = USDM,
) -> Extraction:
    """Parse every line of ``lines`` (``line``, ``raw``) and split it into the raw kinds, as ``market`` sends them
    (``kinds.kinds_for``: both paths read a line with its market's SQL).

    ``on_rows(kind, rows)`` gets each kind's rows as soon as they are ready, so its files are written while the next
    kinds are read: a kind with a fast path right after its own lines are read (the kinds with level lists, whose
    files take longest, first). A line some fast path turned down gets its generic reading only after all of them;
    in the rare segment where that reading is a row of a kind already handed over (a REST trade, a frame whose
    stream name belongs to another kind), that kind's rows are handed over again, complete, and replace the first.
    """
    specs = kinds_for(market)
    fast_kinds = tuple(spec for spec in specs if spec.kind in fast.STREAM_MARKS)
    lines = fast.guess_kinds(con, lines)
    con.register("segment_lines", lines)
    subscriptions = _subscriptions(con)
    _read_records(con, f"{fast.GUESS_COLUMN} IS NULL", specs, create=True)

    def hand_over(spec: KindSpec, accepted: pa.Table | None) -> None:
        if accepted is not None or spec.kind in _route_counts(con):
            kinds[spec.kind] = _extract_kind(con, spec, segment, subscriptions, accepted)
        else:
            kinds[spec.kind] = KindRows(_NO_ROWS[spec.kind], np.arange(0), 0, [])
        if on_rows is not None:
            on_rows(spec.kind, kinds[spec.kind])

    kinds: dict[str, KindRows] = {}
    guessed = set(pc.unique(lines.column(fast.GUESS_COLUMN)).drop_null().to_pylist())
    accepted: dict[str, pa.Table] = {}
    rejected = [pa.table({"line": pa.array([], pa.int64())})]
    for spec in sorted(fast_kinds, key=lambda spec: spec.kind not in _NESTED_KINDS):
        if spec.kind in guessed:
            rows, turned_down = _read_fast_rows(con, spec, lines, segment, subscriptions)
            rejected.append(turned_down)
            if rows.num_rows:
                accepted[spec.kind] = rows
        hand_over(spec, accepted.get(spec.kind))
    rejected_lines = pa.concat_tables(rejected)
    if rejected_lines.num_rows:
        before = _route_counts(con)
        con.register("rejected_lines", rejected_lines)
        _read_records(con, "line IN (SELECT line FROM rejected_lines)", specs, create=False)
        con.unregister("rejected_lines")
        after = _route_counts(con)
        for spec in fast_kinds:
            if after[spec.kind] > before[spec.kind]:
                hand_over(spec, accepted.get(spec.kind))
    con.unregister("segment_lines")
    for spec in specs:
        if spec.kind not in kinds:
            hand_over(spec, None)
    leftover = con.sql(
        f"""
        SELECT line, {prefix("k")} AS record_kind, {payload("e")} AS event
        FROM records WHERE route IS NULL ORDER BY line
        """
    ).to_arrow_table()
    return Extraction({spec.kind: kinds[spec.kind] for spec in specs}, leftover)


def _read_fast_rows(
    con: duckdb.DuckDBPyConnection,
    spec: KindSpec,
    lines: pa.Table,
    segment: str,
    subscriptions: dict[str, set[str]],
) -> tuple[pa.Table, pa.Table]:
    """The rows of ``spec`` the fast path accepted, and the ``line`` of every other line it read."""
    rows = fast.read_rows(con, spec, segment, subscriptions, lines)
    counted = pc.fill_null(rows.column(fast.ACCEPTED), False)
    turned_down = rows.filter(pc.invert(counted)).select(["line"])
    if turned_down.num_rows:
        rows = rows.filter(counted)
    return rows.drop_columns([fast.ACCEPTED]), turned_down


def _subscriptions(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """Connection id -> the streams its ``connect`` records in this segment list (connections without one, or
    whose records list no streams, are absent: their frames cannot be judged here). Only lines that can be connect
    records are parsed (``fast.CONNECT_COLUMN``): a ``k`` that reads ``connect`` is written so, or spelt with
    escapes (a backslash)."""
    found: dict[str, set[str]] = {}
    rows = con.sql(
        f"""
        SELECT v[2], TRY(from_json(json_extract(raw, '$.streams'), '["VARCHAR"]'))
        FROM (SELECT raw, TRY(json_extract_string(raw, ['$.k', '$.c'])) AS v
              FROM segment_lines WHERE {fast.CONNECT_COLUMN})
        WHERE v[1] = 'connect' AND v[2] IS NOT NULL
        """
    ).fetchall()
    for conn_id, streams in rows:
        if streams is not None:
            found.setdefault(conn_id, set()).update(stream for stream in streams if stream is not None)
    return found


def _read_records(con: duckdb.DuckDBPyConnection, where: str, specs: tuple[KindSpec, ...], *, create: bool) -> None:
    """Table ``records``: every slot and the route of each line the generic path reads, the lines of
    ``segment_lines`` matching ``where`` (first the lines no fast path reads, then those whose rows did not count
    there and get their exact reasons here), created or added to."""
    combined = ", ".join(f"'{path}'" for path in COMBINED_PATHS)
    plain = ", ".join(f"'{path}'" for path in PLAIN_PATHS)
    routes = " ".join(f"WHEN {spec.route} THEN '{spec.kind}'" for spec in specs)
    slot_columns = ", ".join(f"v[{i}] AS {name}" for i, name in enumerate(SLOTS, start=1))
    con.execute(
        f"""
        {"CREATE OR REPLACE TEMP TABLE records AS" if create else "INSERT INTO records"}
        SELECT line, {", ".join(SLOTS)}, CASE WHEN v IS NULL THEN NULL {routes} END AS route
        FROM (
            SELECT *, {slot_columns}
            FROM (
                SELECT line, TRY(CASE WHEN contains(raw, '{COMBINED_MARK}') THEN json_extract_string(raw, [{combined}])
                                      ELSE json_extract_string(raw, [{plain}]) END) AS v
                FROM segment_lines
                WHERE {where}
            )
        )
        """
    )


def _route_counts(con: duckdb.DuckDBPyConnection) -> Counter[str]:
    """Lines of ``records`` per kind they are routed to."""
    return Counter(
        dict(con.sql("SELECT route, count(*) FROM records WHERE route IS NOT NULL GROUP BY route").fetchall())
    )


def _extract_kind(
    con: duckdb.DuckDBPyConnection,
    spec: KindSpec,
    segment: str,
    subscriptions: dict[str, set[str]],
    accepted: pa.Table | None,
) -> KindRows:
    """The rows of ``spec``: the generic path's (from ``records``) and the fast path's ``accepted`` ones."""
    generic = f"generic_{spec.kind}"
    source = f"records WHERE route = '{spec.kind}'"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {generic} AS {checked_sql(spec, source, SLOTS, subscriptions)}",
        {"segment": segment},
    )
    if spec.agreeing_columns:
        _quarantine_disagreeing_rest_rows(con, spec, generic, accepted)
    bad = con.sql(f"SELECT line, problems FROM {generic} WHERE problems <> '' ORDER BY line").fetchall()
    quarantined = [(line, f"{spec.kind}: {problems}") for line, problems in bad]
    valid = con.sql(f"SELECT {output_sql(spec)} FROM {generic} WHERE problems = ''").to_arrow_table()
    con.execute(f"DROP TABLE {generic}")
    if accepted is not None:
        valid = pa.concat_tables([valid, accepted])
    rows = _first_of_each_id(con, spec, valid)
    order = _sort_order(rows, ("date", "symbol", spec.time_column, spec.id_column, "line"))
    return KindRows(rows, order, valid.num_rows - rows.num_rows, quarantined)


def _first_of_each_id(con: duckdb.DuckDBPyConnection, spec: KindSpec, valid: pa.Table) -> pa.Table:
    """``valid`` without duplicates: of the rows sharing a stream and id, the first by ``spec.keep_first``."""
    con.register("valid_rows", valid)
    try:
        duplicated = con.sql(
            f"SELECT 1 FROM valid_rows GROUP BY stream, {spec.id_column} HAVING count(*) > 1 LIMIT 1"
        ).fetchall()
        if not duplicated:
            return valid
        return con.sql(
            f"""
            SELECT * FROM valid_rows
            QUALIFY row_number() OVER (PARTITION BY stream, {spec.id_column} ORDER BY {spec.keep_first}) = 1
            """
        ).to_arrow_table()
    finally:
        con.unregister("valid_rows")


def _sort_order(table: pa.Table, keys: tuple[str, ...]) -> np.ndarray:
    """Indices that sort ``table`` ascending by ``keys`` (no nulls). numpy sorts integer keys several times faster
    than Arrow sorts strings, so text keys are replaced by their rank among their distinct values."""
    columns = []
    for key in reversed(keys):  # np.lexsort: the last key is the primary one
        column = table.column(key)
        if pa.types.is_integer(column.type):
            columns.append(column.to_numpy())
        else:
            distinct = pc.unique(column)
            columns.append(pc.index_in(column, value_set=distinct.take(pc.array_sort_indices(distinct))).to_numpy())
    return np.lexsort(columns)


REST_DISAGREES = "REST trade differs from the websocket trade with the same id in"


def _quarantine_disagreeing_rest_rows(
    con: duckdb.DuckDBPyConnection, spec: KindSpec, generic: str, accepted: pa.Table | None
) -> None:
    """Give every valid ``rest`` row (all in ``generic``: REST trades never take the fast path) whose id has a valid
    ``ws`` row (in ``generic`` or the fast path's ``accepted`` rows) with other values a problem naming the columns."""
    columns = ", ".join(dict.fromkeys(("source", "stream", spec.id_column, *spec.agreeing_columns)))
    valid_ws = f"SELECT {columns} FROM {generic} WHERE problems = '' AND source = 'ws'"
    if accepted is not None:
        con.register("accepted_rows", accepted)
        valid_ws += f" UNION ALL SELECT {columns} FROM accepted_rows WHERE source = 'ws'"
    differs = " OR ".join(f"w.{c} IS DISTINCT FROM r.{c}" for c in spec.agreeing_columns)
    names = ", ".join(f"CASE WHEN w.{c} IS DISTINCT FROM r.{c} THEN '{c}' END" for c in spec.agreeing_columns)
    same_trade = f"w.stream = r.stream AND w.{spec.id_column} = r.{spec.id_column}"
    con.execute(
        f"""
        UPDATE {generic} AS r
        SET problems = '{REST_DISAGREES} ' || (
            SELECT concat_ws(', ', {names}) FROM ({valid_ws}) w WHERE {same_trade} AND ({differs}) LIMIT 1
        )
        WHERE r.source = 'rest' AND r.problems = ''
          AND EXISTS (SELECT 1 FROM ({valid_ws}) w WHERE {same_trade} AND ({differs}))
        """
    )
    if accepted is not None:
        con.unregister("accepted_rows")

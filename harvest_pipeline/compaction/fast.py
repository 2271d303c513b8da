"""The fast path: websocket frames read with only their own kind's JSON paths.

Almost every line of a segment is a combined-stream frame of one of three kinds. A substring of its stream name
(``@aggTrade"``...) guesses the kind of a line cheaply; DuckDB then reads a guessed line with only the slots its
kind's SQL and route read (14-16 paths instead of all 25) and runs the very same ``kinds.checked_sql``. The guess
decides nothing: a fast row counts only if the generic path would route its line to the same kind, judged by the
generic path's own test on the same slots (``KindSpec.route``, and the combined-stream mark that makes it read these
paths), and if it has no problem. Every other line guessed here, like every line not guessed, goes through the
generic extraction (``extract.py``), which gives it its exact quarantine reason. So the fast path only ever decides
"valid, and these values", as the generic path would (``tests/compaction/test_fast_path_identical.py`` compares
every output).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from harvest_pipeline.compaction.kinds import (
    COMBINED_MARK,
    COMBINED_PATHS,
    KIND_BY_NAME,
    KindSpec,
    checked_sql,
    output_sql,
    slots_of,
    slots_read,
)

ENABLED = True
"""Whether frames take the fast path; tests switch it off to compare every output with the generic path's."""

STREAM_MARKS = {"prices": '@aggTrade"', "bookticker": '@bookTicker"', "orderbook": "@depth"}
"""Kinds with a fast path, and what the stream name of a line of that kind contains (a guess, checked later)."""
FAST_KINDS = tuple(KIND_BY_NAME[kind] for kind in STREAM_MARKS)
GUESS_COLUMN = "fast_kind"
"""Column added to the lines: the kind whose fast path reads the line, null for the generic path."""
ACCEPTED = "accepted"
"""Column of ``read_rows``: the row counts (the generic path routes its line to the same kind, and it has no
problem). Every other line is the generic path's."""


def guess_kinds(con: duckdb.DuckDBPyConnection, lines: pa.Table) -> pa.Table:
    """``lines`` with ``GUESS_COLUMN`` appended (one kind per line at most, so no line is read twice)."""
    if not ENABLED:
        return lines.append_column(GUESS_COLUMN, pa.nulls(lines.num_rows, pa.string()))
    con.register("unguessed_lines", lines)
    guesses = " ".join(f"WHEN contains(raw, '{mark}') THEN '{kind}'" for kind, mark in STREAM_MARKS.items())
    kinds = con.sql(f"SELECT CASE {guesses} END FROM unguessed_lines").to_arrow_table().column(0)
    con.unregister("unguessed_lines")
    return lines.append_column(GUESS_COLUMN, kinds)


def source_sql(spec: KindSpec, *, tolerant: bool) -> tuple[str, tuple[str, ...]]:
    """SQL of the lines guessed to be of ``spec``, with the slots ``kinds.checked_sql`` reads and ``taken``: whether
    the generic path routes the line to ``spec`` and reads it with the same (combined-stream) paths. Only a
    ``tolerant`` read survives a line that is not JSON (its slots are null); it costs ~10 % more."""
    slots = tuple(sorted(slots_of(spec) | slots_read(spec.route), key=lambda name: int(name[1:])))
    paths = ", ".join(f"'{COMBINED_PATHS[int(name[1:]) - 1]}'" for name in slots)
    extract = f"json_extract_string(raw, [{paths}])"
    columns = ", ".join(f"v[{i}] AS {name}" for i, name in enumerate(slots, start=1))
    sql = f"""(
        SELECT *, coalesce(combined AND ({spec.route}), false) AS taken
        FROM (
            SELECT line, {columns}, contains(raw, '{COMBINED_MARK}') AS combined
            FROM (SELECT line, raw, {f"TRY({extract})" if tolerant else extract} AS v
                  FROM segment_lines WHERE {GUESS_COLUMN} = '{spec.kind}')
        )
    )"""
    return sql, slots


def read_rows(
    con: duckdb.DuckDBPyConnection, spec: KindSpec, segment: str, subscriptions: dict[str, set[str]]
) -> pa.Table:
    """The rows of the lines guessed to be of ``spec``: ``kinds.output_sql`` columns and ``ACCEPTED``. Lines are read
    strictly first (no TRY: ~10 % faster); if one is not JSON, all are read again, tolerantly."""

    def read(tolerant: bool) -> pa.Table:
        source, slots = source_sql(spec, tolerant=tolerant)
        checked = checked_sql(spec, source, slots, subscriptions, keep=("taken",))
        sql = f"""
            SELECT {output_sql(spec, ACCEPTED)}, {ACCEPTED}
            FROM (SELECT *, taken AND problems = '' AS {ACCEPTED} FROM ({checked}))
            """
        return con.sql(sql, params={"segment": segment}).to_arrow_table()

    try:
        return read(tolerant=False)
    except duckdb.InvalidInputException:  # a guessed line is not JSON
        return read(tolerant=True)

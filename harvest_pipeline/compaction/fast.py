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

Where the compiled scanner is built (``framescan.py``), it makes the guess and reads every guessed line it can
instead of DuckDB's JSON paths: its texts are the same slots, its exact integers, decimals and depth levels stand
in for ``exact_int``, ``exact_dec`` and ``json_levels`` (``scanned_spec``), and the same SQL checks them. DuckDB
reads the guessed lines the scanner turns down, as above.
"""

from __future__ import annotations

import dataclasses
import re

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harvest_pipeline.compaction import framescan
from harvest_pipeline.compaction.kinds import (
    COMBINED_MARK,
    COMBINED_PATHS,
    KIND_BY_NAME,
    Column,
    KindSpec,
    checked_sql,
    output_sql,
    slots_of,
    slots_read,
)

ENABLED = True
"""Whether frames take the fast path; tests switch it off to compare every output with the generic path's."""

SCANNED_MARKS = {"prices": '@aggTrade"', "bookticker": '@bookTicker"', "orderbook": "@depth"}
"""Kinds the compiled scanner reads, and what the stream name of a line of that kind contains (a guess, checked
later), in the order of the scanner's own marks (``classify``)."""
STREAM_MARKS = {
    **SCANNED_MARKS,
    "trades": '@trade"',
    "mark_price": "@markPrice",
    "liquidations": '@forceOrder"',
    "klines": "@kline_",
}
"""Every kind with a fast path and its mark. DuckDB reads the kinds the scanner does not know (their lines are few,
except ``trades``), still with their own paths only."""
FAST_KINDS = tuple(KIND_BY_NAME[kind] for kind in STREAM_MARKS)
GUESS_COLUMN = "fast_kind"
"""Column added to the lines: the kind whose fast path reads the line, null for the generic path."""
CONNECT_COLUMN = "may_connect"
"""Column added to the lines: whether it may be a connect record (only those are parsed for subscriptions)."""
ACCEPTED = "accepted"
"""Column of ``read_rows``: the row counts (the generic path routes its line to the same kind, and it has no
problem). Every other line is the generic path's."""


def guess_kinds(con: duckdb.DuckDBPyConnection, lines: pa.Table) -> pa.Table:
    """``lines`` with ``GUESS_COLUMN`` appended (one kind per line at most, so no line is read twice) and
    ``CONNECT_COLUMN`` (the line may be a connect record: it contains ``connect`` or a backslash, a ``k`` spelt
    with escapes). The scanner finds both in one pass; without it, DuckDB does."""
    if framescan.usable() and ENABLED:
        codes, may_connect = framescan.classify(lines.column("raw"))
        _guess_unscanned_kinds(lines.column("raw"), codes)
        indices = pa.array(codes - 1, mask=codes == 0, type=pa.int8())
        guesses = pa.DictionaryArray.from_arrays(indices, pa.array(list(STREAM_MARKS)))
        return lines.append_column(GUESS_COLUMN, guesses).append_column(CONNECT_COLUMN, pa.array(may_connect))
    con.register("unguessed_lines", lines)
    guesses = " ".join(f"WHEN contains(raw, '{mark}') THEN '{kind}'" for kind, mark in STREAM_MARKS.items())
    guess = f"CASE {guesses} END" if ENABLED else "NULL::VARCHAR"
    found = con.sql(
        f"SELECT {guess}, contains(raw, 'connect') OR contains(raw, '\\') FROM unguessed_lines"
    ).to_arrow_table()
    con.unregister("unguessed_lines")
    return lines.append_column(GUESS_COLUMN, found.column(0)).append_column(CONNECT_COLUMN, found.column(1))


def _guess_unscanned_kinds(raw: pa.ChunkedArray, codes: np.ndarray) -> None:
    """Give the lines the scanner guessed nothing for (code 0) the code of the first other kind whose mark they
    contain (its index in ``STREAM_MARKS`` plus one), in place."""
    unguessed = np.flatnonzero(codes == 0)
    if not len(unguessed):
        return
    candidates = raw.take(pa.array(unguessed))
    for code, mark in enumerate(STREAM_MARKS.values(), start=1):
        if code <= len(SCANNED_MARKS):
            continue
        found = pc.fill_null(pc.match_substring(candidates, mark), False).to_numpy(zero_copy_only=False)
        hits = unguessed[found]
        hits = hits[codes[hits] == 0]
        codes[hits] = code


def guessed_rows(lines: pa.Table, kind: str) -> np.ndarray:
    """Positions of the lines of ``lines`` (as ``guess_kinds`` returns them) guessed to be of ``kind``."""
    column = lines.column(GUESS_COLUMN)
    if pa.types.is_dictionary(column.type):
        positions, at = [], 0
        for chunk in column.chunks:
            code = chunk.dictionary.to_pylist().index(kind)
            positions.append(np.flatnonzero(chunk.indices.fill_null(-1).to_numpy() == code) + at)
            at += len(chunk)
        return np.concatenate(positions) if positions else np.arange(0)
    return np.flatnonzero(pc.fill_null(pc.equal(column, kind), False).to_numpy(zero_copy_only=False))


def source_sql(spec: KindSpec, *, tolerant: bool, table: str = "segment_lines") -> tuple[str, tuple[str, ...]]:
    """SQL of the lines of ``table`` guessed to be of ``spec``, with the slots ``kinds.checked_sql`` reads and
    ``taken``: whether the generic path routes the line to ``spec`` and reads it with the same (combined-stream)
    paths. Only a ``tolerant`` read survives a line that is not JSON (its slots are null); it costs ~10 % more."""
    slots = _slots(spec)
    paths = ", ".join(f"'{COMBINED_PATHS[int(name[1:]) - 1]}'" for name in slots)
    extract = f"json_extract_string(raw, [{paths}])"
    columns = ", ".join(f"v[{i}] AS {name}" for i, name in enumerate(slots, start=1))
    sql = f"""(
        SELECT *, coalesce(combined AND ({spec.route}), false) AS taken
        FROM (
            SELECT line, {columns}, contains(raw, '{COMBINED_MARK}') AS combined
            FROM (SELECT line, raw, {f"TRY({extract})" if tolerant else extract} AS v
                  FROM {table} WHERE {GUESS_COLUMN} = '{spec.kind}')
        )
    )"""
    return sql, slots


def _slots(spec: KindSpec) -> tuple[str, ...]:
    return tuple(sorted(slots_of(spec) | slots_read(spec.route), key=lambda name: int(name[1:])))


_SCANNED_LEVELS = {"bids": framescan.LEVEL_COLUMNS[0], "asks": framescan.LEVEL_COLUMNS[1]}


def scanned_spec(spec: KindSpec) -> tuple[KindSpec, dict[str, str]]:
    """``spec`` over the scanner's columns, and the slots the scanner converts (slot -> ``int`` or ``dec``).

    A column that is an exact conversion of one slot (``kinds.Conversion``) reads the scanner's typed value, which
    it gives only when the conversion is exact, so the value is what ``exact_int``/``exact_dec`` would give, null
    exactly when the key is absent. A depth diff's levels are the scanned lists, which the scanner accepts only
    without a problem (pairs of exact decimals, price > 0, qty >= 0), so those columns name none; the SQL leaves
    them out (null) and ``_with_levels`` puts them in, so they never travel through DuckDB and back. A slot some
    other SQL of the kind reads as text, or that two columns convert differently, stays text."""
    converts: dict[str, set[str]] = {}
    for column in spec.columns:
        if column.conversion is not None:
            for slot_name in column.conversion.slots:
                converts.setdefault(slot_name, set()).add(column.conversion.convert)
    typed = {slot_name: next(iter(kinds)) for slot_name, kinds in converts.items() if len(kinds) == 1}
    while True:
        variant = dataclasses.replace(spec, columns=tuple(_scanned_column(column, typed) for column in spec.columns))
        still_text = (slots_of(variant) | slots_read(spec.route)) & typed.keys()
        if not still_text:
            return variant, typed
        typed = {slot_name: convert for slot_name, convert in typed.items() if slot_name not in still_text}


def _scanned_column(column: Column, typed: dict[str, str]) -> Column:
    if column.name in _SCANNED_LEVELS:
        return Column(column.name, "NULL")  # the scanned lists are put in after the query (``_with_levels``)
    conversion = column.conversion
    if conversion is None or any(typed.get(name) != conversion.convert for name in conversion.slots):
        return column
    text = conversion.text
    for name in conversion.slots:
        text = re.sub(rf"\b{name}\b", framescan.typed_name(name, conversion.convert), text)
    return Column(column.name, text, conversion.problem(column.name, f"CAST({text} AS VARCHAR)"))


def _with_levels(read: pa.Table, scanned: pa.Table) -> pa.Table:
    """``read`` (rows of ``scanned_spec`` over ``scanned``) with the scanned levels in place of its null columns."""
    positions = np.searchsorted(scanned.column("line").to_numpy(), read.column("line").to_numpy())
    in_order = len(positions) == scanned.num_rows and bool(np.all(positions == np.arange(len(positions))))
    for name, column in _SCANNED_LEVELS.items():
        levels = scanned.column(column) if in_order else scanned.column(column).take(positions)
        read = read.set_column(read.schema.get_field_index(name), name, levels)
    return read


def _accepted_rows(
    con: duckdb.DuckDBPyConnection,
    spec: KindSpec,
    source: str,
    slots: tuple[str, ...],
    segment: str,
    subscriptions: dict[str, set[str]],
) -> pa.Table:
    checked = checked_sql(spec, source, slots, subscriptions, keep=("taken",))
    sql = f"""
        SELECT {output_sql(spec, ACCEPTED)}, {ACCEPTED}
        FROM (SELECT *, taken AND problems = '' AS {ACCEPTED} FROM ({checked}))
        """
    return con.sql(sql, params={"segment": segment}).to_arrow_table()


def read_rows(
    con: duckdb.DuckDBPyConnection,
    spec: KindSpec,
    segment: str,
    subscriptions: dict[str, set[str]],
    lines: pa.Table,
) -> pa.Table:
    """The rows of the lines guessed to be of ``spec`` (``lines`` as given to ``segment_lines``):
    ``kinds.output_sql`` columns and ``ACCEPTED``. The compiled scanner reads the lines it can
    (``framescan.py``); DuckDB reads the others (all, without the scanner) strictly first (no TRY: ~10 % faster),
    and if one is not JSON, all of them again, tolerantly."""
    table = "segment_lines"
    parts = []
    if framescan.usable() and spec.kind in SCANNED_MARKS:
        rows = guessed_rows(lines, spec.kind)
        variant, typed = scanned_spec(spec)
        line_numbers = lines.column("line").to_numpy()
        try:
            scanned = framescan.scan(lines.column("raw"), line_numbers, rows, spec.kind == "orderbook", typed)
        except MemoryError:  # a column beyond 2 GiB of text in one segment: DuckDB reads it all
            scanned = framescan.Scanned(np.zeros(len(rows), dtype=np.bool_), pa.table({}))
        if scanned.table.num_rows:
            con.register("scanned_lines", scanned.table)
            source = f"(SELECT *, coalesce(combined AND ({spec.route}), false) AS taken FROM scanned_lines)"
            typed_columns = tuple(framescan.typed_name(name, convert) for name, convert in typed.items())
            slots = _slots(variant) + typed_columns
            read = _accepted_rows(con, variant, source, slots, segment, subscriptions)
            con.unregister("scanned_lines")
            parts.append(_with_levels(read, scanned.table) if spec.kind == "orderbook" else read)
        if parts and scanned.accepted.all():
            return parts[0]
        con.register("unscanned_lines", lines.take(rows[~scanned.accepted]))
        table = "unscanned_lines"
    try:
        source, slots = source_sql(spec, tolerant=False, table=table)
        parts.append(_accepted_rows(con, spec, source, slots, segment, subscriptions))
    except duckdb.InvalidInputException:  # a guessed line is not JSON
        source, slots = source_sql(spec, tolerant=True, table=table)
        parts.append(_accepted_rows(con, spec, source, slots, segment, subscriptions))
    finally:
        if table != "segment_lines":
            con.unregister(table)
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]

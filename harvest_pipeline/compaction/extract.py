"""Segment lines -> typed, validated, deduplicated rows per raw kind, with DuckDB JSON paths.

Every line is parsed once: ``json_extract_string(raw, [paths])`` pulls all keys any kind needs into one list, by
exact, case-sensitive JSON path (DuckDB's struct auto-detection folds case and would merge Binance's ``e``/``E``,
``a``/``A``...). Each kind is then a projection of that list with exact conversions: integers must be integers,
prices and quantities must fit ``DECIMAL(18, 8)`` without rounding, levels must be ``[price, qty]`` pairs. A row with
a field that fails is not written; its line is quarantined with the names of the failing keys. Duplicates (the same
exchange id on the same stream, e.g. from overlapping connections) keep their first line.

Why DuckDB rather than orjson in Python: on the same 1,000,000-line segment DuckDB extracts ~2.5x faster
(figures in docs/compaction.md, measured by bench/compaction.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from harvest_pipeline import schema

_PREFIX_KEYS = ("t", "c", "n", "k", "s")
_PAYLOAD_KEYS = ("e", "E", "T", "s", "a", "p", "q", "f", "l", "m", "U", "u", "pu", "b", "B", "A")
_SNAPSHOT_KEYS = ("lastUpdateId", "bids", "asks")

COMBINED_PATHS: tuple[str, ...] = (
    *(f"$.{key}" for key in _PREFIX_KEYS),
    *(f"$.f.data.{key}" for key in _PAYLOAD_KEYS),
    "$.symbol",
    *(f"$.f.data.{key}" for key in _SNAPSHOT_KEYS),
)
"""Paths for a line whose frame is a combined-stream message (``{"stream":..., "data": {...}}``)."""

PLAIN_PATHS: tuple[str, ...] = tuple(path.replace("$.f.data.", "$.f.") for path in COMBINED_PATHS)
"""The same keys for a raw-stream frame or a REST snapshot body (fields directly under ``f``)."""

_COMBINED_MARK = ',"f":{"stream":'
"""How a combined-stream frame starts inside a record; any other line is read with ``PLAIN_PATHS``. A frame the
test misclassifies loses its fields and is quarantined with their names, never written wrong."""


def _field(plain_path: str) -> str:
    """The column of ``records`` holding the text at ``plain_path`` (or at its combined-stream twin)."""
    return f"v{PLAIN_PATHS.index(plain_path) + 1}"


def _prefix(key: str) -> str:
    return _field(f"$.{key}")


def _payload(key: str) -> str:
    return _field(f"$.f.{key}")


_MACROS = """
CREATE OR REPLACE TEMP MACRO exact_int(x) AS
    CASE WHEN NOT contains(x, '.') AND NOT contains(x, 'e') AND NOT contains(x, 'E') THEN TRY_CAST(x AS BIGINT) END;
CREATE OR REPLACE TEMP MACRO exact_dec(x) AS
    CASE WHEN TRY_CAST(x AS DECIMAL(18, 8)) = TRY_CAST(x AS DECIMAL(38, 18)) THEN TRY_CAST(x AS DECIMAL(18, 8)) END;
CREATE OR REPLACE TEMP MACRO json_bool(x) AS CASE x WHEN 'true' THEN true WHEN 'false' THEN false END;
CREATE OR REPLACE TEMP MACRO json_levels(x) AS
    CASE WHEN NOT contains(x, 'e') AND NOT contains(x, 'E') AND NOT regexp_matches(x, '[.][0-9]{9}')
    THEN list_transform(
        TRY(from_json(x, '[["VARCHAR"]]')),
        lambda l: {'price': TRY_CAST(l[1] AS DECIMAL(18, 8)),
                   'qty': CASE WHEN len(l) = 2 THEN TRY_CAST(l[2] AS DECIMAL(18, 8)) END}) END;
CREATE OR REPLACE TEMP MACRO levels_ok(levels) AS
    levels IS NOT NULL AND list_bool_and(list_transform(levels, lambda l: l.price IS NOT NULL AND l.qty IS NOT NULL))
    IS NOT FALSE;
CREATE OR REPLACE TEMP MACRO symbol_name(x) AS CASE WHEN regexp_full_match(x, '[A-Z0-9]{1,40}') THEN x END;
"""


@dataclass(frozen=True)
class Column:
    """One output column: its SQL expression, the source key a quarantine reason names, and its validity test."""

    name: str
    sql: str
    key: str | None
    valid: str = "{name} IS NOT NULL"

    def invalid_key_sql(self) -> str | None:
        """SQL yielding the source key when this column's value is invalid, else NULL."""
        if self.key is None:
            return None
        return f"CASE WHEN NOT ({self.valid.format(name=self.name)}) THEN '{self.key}' END"


@dataclass(frozen=True)
class KindSpec:
    """How one raw kind is projected out of the extracted paths."""

    kind: str
    route: str
    """SQL condition on a line's record kind and frame that routes it to this kind."""
    columns: tuple[Column, ...]
    symbol_sql: str
    time_column: str
    """Event-time column that decides the UTC date partition and the sort order."""
    id_column: str
    """Exchange id that identifies a duplicate (per stream)."""


def _provenance() -> tuple[Column, ...]:
    return (
        Column("recv_time_ns", f"exact_int({_prefix('t')})", "t"),
        Column("conn_id", _prefix("c"), "c"),
        Column("segment", "$segment", None),
        Column("line", "line", None),
    )


def _int(name: str, key: str, sql: str | None = None) -> Column:
    return Column(name, f"exact_int({sql or _payload(key)})", key)


def _dec(name: str, key: str) -> Column:
    return Column(name, f"exact_dec({_payload(key)})", key)


def _levels(name: str, sql: str, key: str) -> Column:
    return Column(name, f"json_levels({sql})", key, valid="levels_ok({name})")


_LATENCY = Column("latency_ms", f"exact_int({_prefix('t')}) // 1000000 - exact_int({_payload('E')})", None)
_IS_FRAME = f"{_prefix('k')} = 'frame' AND {_payload('e')} = "

KINDS: tuple[KindSpec, ...] = (
    KindSpec(
        kind="prices",
        route=_IS_FRAME + "'aggTrade'",
        columns=(
            _int("event_time_ms", "E"),
            _int("trade_time_ms", "T"),
            _int("agg_trade_id", "a"),
            _int("first_trade_id", "f"),
            _int("last_trade_id", "l"),
            _dec("price", "p"),
            _dec("qty", "q"),
            Column("is_buyer_maker", f"json_bool({_payload('m')})", "m"),
            _LATENCY,
            *_provenance(),
        ),
        symbol_sql=f"symbol_name({_payload('s')})",
        time_column="trade_time_ms",
        id_column="agg_trade_id",
    ),
    KindSpec(
        kind="orderbook",
        route=_IS_FRAME + "'depthUpdate'",
        columns=(
            _int("event_time_ms", "E"),
            _int("transaction_time_ms", "T"),
            _int("first_update_id", "U"),
            _int("final_update_id", "u"),
            _int("prev_final_update_id", "pu"),
            _levels("bids", _payload("b"), "b"),
            _levels("asks", _payload("a"), "a"),
            _LATENCY,
            *_provenance(),
        ),
        symbol_sql=f"symbol_name({_payload('s')})",
        time_column="event_time_ms",
        id_column="final_update_id",
    ),
    KindSpec(
        kind="bookticker",
        route=_IS_FRAME + "'bookTicker'",
        columns=(
            _int("event_time_ms", "E"),
            _int("transaction_time_ms", "T"),
            _int("update_id", "u"),
            _dec("bid_price", "b"),
            _dec("bid_qty", "B"),
            _dec("ask_price", "a"),
            _dec("ask_qty", "A"),
            _LATENCY,
            *_provenance(),
        ),
        symbol_sql=f"symbol_name({_payload('s')})",
        time_column="event_time_ms",
        id_column="update_id",
    ),
    KindSpec(
        kind="depth_snapshot",
        route=f"{_prefix('k')} = 'snapshot'",
        columns=(
            _int("event_time_ms", "E"),
            _int("transaction_time_ms", "T"),
            _int("last_update_id", "lastUpdateId", _field("$.f.lastUpdateId")),
            _levels("bids", _field("$.f.bids"), "bids"),
            _levels("asks", _field("$.f.asks"), "asks"),
            *_provenance(),
        ),
        symbol_sql=f"symbol_name({_field('$.symbol')})",
        time_column="event_time_ms",
        id_column="last_update_id",
    ),
)
KIND_BY_NAME = {spec.kind: spec for spec in KINDS}

for _spec in KINDS:
    assert [column.name for column in _spec.columns] == schema.RAW_KINDS[_spec.kind].names, _spec.kind


@dataclass
class KindRows:
    """The outcome of one kind: rows to write, how many valid rows were duplicates, and lines to quarantine."""

    table: pa.Table
    """Schema columns plus ``date`` (UTC event date), ``symbol`` and ``stream``, sorted by date, symbol, event
    time, id. DuckDB also sees it as table ``out_<kind>`` (the continuity checks read it there)."""
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
    con.execute(_MACROS)
    return con


def extract_kinds(con: duckdb.DuckDBPyConnection, lines: pa.Table, segment: str) -> Extraction:
    """Parse every line of ``lines`` (``line``, ``raw``) once and split it into the raw kinds."""
    con.register("segment_lines", lines)
    combined = ", ".join(f"'{path}'" for path in COMBINED_PATHS)
    plain = ", ".join(f"'{path}'" for path in PLAIN_PATHS)
    routes = " ".join(f"WHEN {spec.route} THEN '{spec.kind}'" for spec in KINDS)
    slots = ", ".join(_field(path) for path in PLAIN_PATHS)
    slot_columns = ", ".join(f"v[{slot}] AS {_field(path)}" for slot, path in enumerate(PLAIN_PATHS, start=1))
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE records AS
        SELECT line, {slots}, CASE WHEN v IS NULL THEN NULL {routes} END AS route
        FROM (
            SELECT *, {slot_columns}
            FROM (
                SELECT line, TRY(CASE WHEN contains(raw, '{_COMBINED_MARK}') THEN json_extract_string(raw, [{combined}])
                                      ELSE json_extract_string(raw, [{plain}]) END) AS v
                FROM segment_lines
            )
        )
        """
    )
    con.unregister("segment_lines")
    kinds = {spec.kind: _extract_kind(con, spec, segment) for spec in KINDS}
    leftover = con.sql(
        f"""
        SELECT line, {_prefix("k")} AS record_kind, {_payload("e")} AS event
        FROM records WHERE route IS NULL ORDER BY line
        """
    ).to_arrow_table()
    return Extraction(kinds, leftover)


def _extract_kind(con: duckdb.DuckDBPyConnection, spec: KindSpec, segment: str) -> KindRows:
    columns = ",\n".join(f"{column.sql} AS {column.name}" for column in spec.columns)
    invalid = ", ".join(sql for column in spec.columns if (sql := column.invalid_key_sql()))
    checked = f"checked_{spec.kind}"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {checked} AS
        SELECT *, concat_ws(', ', {invalid}, CASE WHEN symbol IS NULL THEN 's (symbol)' END,
                            CASE WHEN stream IS NULL THEN 's (stream)' END) AS bad_keys
        FROM (
            SELECT {columns}, {spec.symbol_sql} AS symbol, {_prefix("s")} AS stream
            FROM records WHERE route = '{spec.kind}'
        )
        """,
        {"segment": segment},
    )
    [(valid,)] = con.sql(f"SELECT count(*) FROM {checked} WHERE bad_keys = ''").fetchall()
    bad = con.sql(f"SELECT line, bad_keys FROM {checked} WHERE bad_keys <> '' ORDER BY line").fetchall()
    quarantined = [(line, _bad_field_reason(spec, keys)) for line, keys in bad]
    names = ", ".join(schema.RAW_KINDS[spec.kind].names)
    rows = con.sql(
        f"""
        SELECT {names}, strftime(CAST(epoch_ms({spec.time_column}) AS DATE), '%Y-%m-%d') AS date, symbol, stream
        FROM {checked} WHERE bad_keys = ''
        QUALIFY row_number() OVER (PARTITION BY stream, {spec.id_column} ORDER BY line) = 1
        """
    ).to_arrow_table()
    # Arrow sorts the (nearly time-ordered) rows several times faster than a DuckDB ORDER BY over the wide rows.
    rows = rows.sort_by([(key, "ascending") for key in ("date", "symbol", spec.time_column, spec.id_column, "line")])
    con.execute(f"DROP TABLE {checked}")
    con.register(f"out_{spec.kind}", rows)
    return KindRows(rows, valid - rows.num_rows, quarantined)


def _bad_field_reason(spec: KindSpec, keys: str) -> str:
    return (
        f"{spec.kind}: missing or invalid {keys} (integers must be integers, decimals must fit DECIMAL(18, 8) exactly)"
    )

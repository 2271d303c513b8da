"""Segment lines -> typed, validated, deduplicated rows per raw kind, with DuckDB JSON paths.

Every line is parsed once: ``json_extract_string(raw, [paths])`` pulls all keys any kind needs into one list, by
exact, case-sensitive JSON path (DuckDB's struct auto-detection folds case and would merge Binance's ``e``/``E``,
``a``/``A``...). Each kind is then a projection of that list with exact conversions: integers must be integers,
prices and quantities must fit ``DECIMAL(18, 8)`` without rounding, levels must be ``[price, qty]`` pairs. Every
column also carries the SQL naming its problem (``rules.py``: ids and times in int64 and not negative, times from
2017 and at most a day after the receive time, positive prices and quantities, a stream the connection subscribed).
All problems of a row are collected in one ``problems`` column, set-based; a row with any is not written and its line
is quarantined with them, so one bad value costs one line, never the segment. Duplicates (the same exchange id on the
same stream, e.g. from overlapping connections) keep their first line.

Why DuckDB rather than orjson in Python: on the same 1,000,000-line segment DuckDB extracts ~2.5x faster
(figures in docs/compaction.md, measured by bench/compaction.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from harvest_pipeline import schema
from harvest_pipeline.compaction import rules
from harvest_pipeline.store.identity import AGREEING_COLUMNS
from harvest_pipeline.symbols import SYMBOL_REGEX

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


_SLOTS = ", ".join(_field(path) for path in PLAIN_PATHS)


_MACROS = (
    """
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
"""
    + f"CREATE OR REPLACE TEMP MACRO symbol_name(x) AS CASE WHEN regexp_full_match(x, '{SYMBOL_REGEX}') THEN x END;\n"
)


@dataclass(frozen=True)
class Column:
    """One output column: its SQL over the slots of ``records`` and the SQL naming its problem (NULL when valid).

    A ``derived`` column is computed from other columns of valid rows only (``latency_ms``: on an implausible
    time the subtraction could overflow).
    """

    name: str
    sql: str
    problem: str | None = None
    derived: bool = False


@dataclass(frozen=True)
class KindSpec:
    """How one raw kind is projected out of the extracted paths."""

    kind: str
    route: str
    """SQL condition on a line's record kind and frame that routes it to this kind."""
    columns: tuple[Column, ...]
    symbol_sql: str
    """SQL of the payload symbol (NULL when malformed); ``symbol_text`` is the JSON text it came from."""
    symbol_text: str
    time_column: str
    """Event-time column that decides the UTC date partition and the sort order."""
    id_column: str
    """Exchange id that identifies a duplicate (per stream)."""
    keep_first: str = "line"
    """Order among duplicates: the first row by it is kept."""
    agreeing_columns: tuple[str, ...] = ()
    """Columns a ``rest`` row must share with the ``ws`` row of the same id; a REST row that differs is quarantined
    (the exchange would have changed history), not silently dropped as a duplicate."""


def _provenance() -> tuple[Column, ...]:
    t = _prefix("t")
    recv_problem = rules.int_problem_sql("recv_time_ns", t, "t", min_value=rules.MIN_TIME_NS)
    return (
        Column("recv_time_ns", f"exact_int({t})", recv_problem),
        Column("conn_id", _prefix("c"), rules.present_problem_sql(_prefix("c"), "c")),
        Column("segment", "$segment"),
        Column("line", "line"),
    )


def _id(name: str, key: str, text: str | None = None) -> Column:
    text = text or _payload(key)
    return Column(name, f"exact_int({text})", rules.int_problem_sql(name, text, key))


def _time(name: str, key: str, text: str | None = None) -> Column:
    text = text or _payload(key)
    problem = rules.int_problem_sql(name, text, key, min_value=rules.MIN_TIME_MS, recv_ns="recv_time_ns")
    return Column(name, f"exact_int({text})", problem)


def _dec(name: str, key: str) -> Column:
    return Column(name, f"exact_dec({_payload(key)})", rules.decimal_problem_sql(name, _payload(key), key))


def _levels(name: str, text: str, key: str, *, zero_qty: bool) -> Column:
    return Column(name, f"json_levels({text})", rules.levels_problem_sql(name, text, key, zero_qty=zero_qty))


_LATENCY = Column("latency_ms", "recv_time_ns // 1000000 - event_time_ms", derived=True)
_IS_FRAME = f"{_prefix('k')} = 'frame' AND {_payload('e')} = "
_PAYLOAD_SYMBOL_SQL = f"symbol_name({_payload('s')})"
_IS_REST_TRADE = f"{_prefix('k')} = 'rest_trade'"
_TRADE_SYMBOL = f"coalesce({_payload('s')}, {_field('$.symbol')})"
"""A REST trade carries no ``s``: the collector writes its symbol beside it."""

KINDS: tuple[KindSpec, ...] = (
    KindSpec(
        kind="prices",
        route=f"({_IS_FRAME}'aggTrade' OR {_IS_REST_TRADE})",
        columns=(
            _time("event_time_ms", "E", f"CASE WHEN {_IS_REST_TRADE} THEN {_payload('T')} ELSE {_payload('E')} END"),
            _time("trade_time_ms", "T"),
            _id("agg_trade_id", "a"),
            _id("first_trade_id", "f"),
            _id("last_trade_id", "l"),
            _dec("price", "p"),
            _dec("qty", "q"),
            Column(
                "is_buyer_maker",
                f"json_bool({_payload('m')})",
                rules.bool_problem_sql("is_buyer_maker", _payload("m"), "m"),
            ),
            _LATENCY,
            Column("source", f"CASE WHEN {_IS_REST_TRADE} THEN 'rest' ELSE 'ws' END"),
            *_provenance(),
        ),
        symbol_sql=f"symbol_name({_TRADE_SYMBOL})",
        symbol_text=_TRADE_SYMBOL,
        time_column="trade_time_ms",
        id_column="agg_trade_id",
        keep_first="source = 'rest', line",
        agreeing_columns=AGREEING_COLUMNS["prices"],
    ),
    KindSpec(
        kind="orderbook",
        route=_IS_FRAME + "'depthUpdate'",
        columns=(
            _time("event_time_ms", "E"),
            _time("transaction_time_ms", "T"),
            _id("first_update_id", "U"),
            _id("final_update_id", "u"),
            _id("prev_final_update_id", "pu"),
            _levels("bids", _payload("b"), "b", zero_qty=True),
            _levels("asks", _payload("a"), "a", zero_qty=True),
            _LATENCY,
            *_provenance(),
        ),
        symbol_sql=_PAYLOAD_SYMBOL_SQL,
        symbol_text=_payload("s"),
        time_column="event_time_ms",
        id_column="final_update_id",
    ),
    KindSpec(
        kind="bookticker",
        route=_IS_FRAME + "'bookTicker'",
        columns=(
            _time("event_time_ms", "E"),
            _time("transaction_time_ms", "T"),
            _id("update_id", "u"),
            _dec("bid_price", "b"),
            _dec("bid_qty", "B"),
            _dec("ask_price", "a"),
            _dec("ask_qty", "A"),
            _LATENCY,
            *_provenance(),
        ),
        symbol_sql=_PAYLOAD_SYMBOL_SQL,
        symbol_text=_payload("s"),
        time_column="event_time_ms",
        id_column="update_id",
    ),
    KindSpec(
        kind="depth_snapshot",
        route=f"{_prefix('k')} = 'snapshot'",
        columns=(
            _time("event_time_ms", "E"),
            _time("transaction_time_ms", "T"),
            _id("last_update_id", "lastUpdateId", _field("$.f.lastUpdateId")),
            _levels("bids", _field("$.f.bids"), "bids", zero_qty=False),
            _levels("asks", _field("$.f.asks"), "asks", zero_qty=False),
            *_provenance(),
        ),
        symbol_sql=f"symbol_name({_field('$.symbol')})",
        symbol_text=_field("$.symbol"),
        time_column="event_time_ms",
        id_column="last_update_id",
    ),
)
KIND_BY_NAME = {spec.kind: spec for spec in KINDS}

for _spec in KINDS:
    assert [column.name for column in _spec.columns] == schema.RAW_KINDS[_spec.kind].names, _spec.kind

_RECORD_CHECKS = (rules.int_problem_sql(f"exact_int({_prefix('n')})", _prefix("n"), "n"),)
"""Problems of the record prefix that no output column carries (the sequence number ``n``)."""


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
    slot_columns = ", ".join(f"v[{slot}] AS {_field(path)}" for slot, path in enumerate(PLAIN_PATHS, start=1))
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE records AS
        SELECT line, {_SLOTS}, CASE WHEN v IS NULL THEN NULL {routes} END AS route
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
    subscriptions = _subscriptions(con)
    con.unregister("segment_lines")
    kinds = {spec.kind: _extract_kind(con, spec, segment, subscriptions) for spec in KINDS}
    leftover = con.sql(
        f"""
        SELECT line, {_prefix("k")} AS record_kind, {_payload("e")} AS event
        FROM records WHERE route IS NULL ORDER BY line
        """
    ).to_arrow_table()
    return Extraction(kinds, leftover)


def _subscriptions(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """Connection id -> the streams its ``connect`` records in this segment list (connections without one, or
    whose records list no streams, are absent: their frames cannot be judged here)."""
    found: dict[str, set[str]] = {}
    rows = con.sql(
        f"""
        SELECT r.{_prefix("c")}, TRY(from_json(json_extract(l.raw, '$.streams'), '["VARCHAR"]'))
        FROM records r JOIN segment_lines l USING (line)
        WHERE r.{_prefix("k")} = 'connect' AND r.{_prefix("c")} IS NOT NULL
        """
    ).fetchall()
    for conn_id, streams in rows:
        if streams is not None:
            found.setdefault(conn_id, set()).update(stream for stream in streams if stream is not None)
    return found


def _extract_kind(
    con: duckdb.DuckDBPyConnection, spec: KindSpec, segment: str, subscriptions: dict[str, set[str]]
) -> KindRows:
    values = ", ".join(f"{column.sql} AS {column.name}" for column in spec.columns if not column.derived)
    stored = ", ".join(column.name for column in spec.columns if not column.derived)
    problems = ", ".join(
        [
            *(column.problem for column in spec.columns if column.problem),
            *_RECORD_CHECKS,
            rules.present_problem_sql("stream", "s (stream)"),
            rules.symbol_problem_sql("symbol", spec.symbol_text, "stream"),
            rules.unsubscribed_problem_sql(_prefix("c"), "stream", subscriptions),
        ]
    )
    checked = f"checked_{spec.kind}"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {checked} AS
        SELECT {stored}, symbol, stream, concat_ws('; ', {problems}) AS problems
        FROM (
            SELECT {_SLOTS}, {values}, {spec.symbol_sql} AS symbol, {_prefix("s")} AS stream
            FROM records WHERE route = '{spec.kind}'
        )
        """,
        {"segment": segment},
    )
    if spec.agreeing_columns:
        _quarantine_disagreeing_rest_rows(con, checked, spec)
    [(valid,)] = con.sql(f"SELECT count(*) FROM {checked} WHERE problems = ''").fetchall()
    bad = con.sql(f"SELECT line, problems FROM {checked} WHERE problems <> '' ORDER BY line").fetchall()
    quarantined = [(line, f"{spec.kind}: {problems}") for line, problems in bad]
    names = ", ".join(f"{column.sql} AS {column.name}" if column.derived else column.name for column in spec.columns)
    rows = con.sql(
        f"""
        SELECT {names}, strftime(CAST(epoch_ms({spec.time_column}) AS DATE), '%Y-%m-%d') AS date, symbol, stream
        FROM {checked} WHERE problems = ''
        QUALIFY row_number() OVER (PARTITION BY stream, {spec.id_column} ORDER BY {spec.keep_first}) = 1
        """
    ).to_arrow_table()
    # Arrow sorts the (nearly time-ordered) rows several times faster than a DuckDB ORDER BY over the wide rows.
    rows = rows.sort_by([(key, "ascending") for key in ("date", "symbol", spec.time_column, spec.id_column, "line")])
    con.execute(f"DROP TABLE {checked}")
    con.register(f"out_{spec.kind}", rows)
    return KindRows(rows, valid - rows.num_rows, quarantined)


REST_DISAGREES = "REST trade differs from the websocket trade with the same id in"


def _quarantine_disagreeing_rest_rows(con: duckdb.DuckDBPyConnection, checked: str, spec: KindSpec) -> None:
    """Give every valid ``rest`` row whose id has a valid ``ws`` row with other values a problem naming the columns."""
    differs = " OR ".join(f"w.{c} IS DISTINCT FROM r.{c}" for c in spec.agreeing_columns)
    names = ", ".join(f"CASE WHEN w.{c} IS DISTINCT FROM r.{c} THEN '{c}' END" for c in spec.agreeing_columns)
    same_trade = (
        f"w.source = 'ws' AND w.problems = '' AND w.stream = r.stream AND w.{spec.id_column} = r.{spec.id_column}"
    )
    con.execute(
        f"""
        UPDATE {checked} AS r
        SET problems = '{REST_DISAGREES} ' || (
            SELECT concat_ws(', ', {names}) FROM {checked} w WHERE {same_trade} AND ({differs}) LIMIT 1
        )
        WHERE r.source = 'rest' AND r.problems = ''
          AND EXISTS (SELECT 1 FROM {checked} w WHERE {same_trade} AND ({differs}))
        """
    )

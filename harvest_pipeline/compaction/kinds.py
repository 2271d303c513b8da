"""What each raw kind is made of: the JSON paths a line is read by, and each kind's columns as SQL with their checks.

Every key any kind needs has a *slot* (``v1`` ... ``v25``): the text ``json_extract_string`` finds at its exact,
case-sensitive JSON path (DuckDB's struct auto-detection folds case and would merge Binance's ``e``/``E``,
``a``/``A``...). Each kind is a projection of those slots with exact conversions: integers must be integers,
prices and quantities must fit ``DECIMAL(18, 8)`` without rounding, levels must be ``[price, qty]`` pairs. Every
column also carries the SQL naming its problem (``rules.py``: ids and times in int64 and not negative, times from
2017 and at most a day after the receive time, positive prices and quantities, a stream the connection subscribed);
``checked_sql`` gathers all problems of a row in one ``problems`` column. The generic extraction (``extract.py``)
and the fast path for the exchange's fixed layouts (``fast.py``) both run this SQL, so a row means the same in both.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass

from harvest_pipeline import schema
from harvest_pipeline.compaction import rules
from harvest_pipeline.markets import Market
from harvest_pipeline.store.identity import AGREEING_COLUMNS, KEEP_FIRST
from harvest_pipeline.symbols import SYMBOL_REGEX

_PREFIX_KEYS = ("t", "c", "n", "k", "s")
_PAYLOAD_KEYS = ("e", "E", "T", "s", "a", "p", "q", "f", "l", "m", "U", "u", "pu", "b", "B", "A")
_SNAPSHOT_KEYS = ("lastUpdateId", "bids", "asks")
_LIQUIDATION_KEYS = ("s", "S", "o", "f", "q", "p", "ap", "X", "l", "z", "T")
"""Keys of a forceOrder's order object ``o``."""
_KLINE_KEYS = ("t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q")
"""Keys of a kline event's kline object ``k``."""
_MORE_PAYLOAD_KEYS = (
    "t",
    "X",
    "i",
    "P",
    "r",
    *(f"o.{key}" for key in _LIQUIDATION_KEYS),
    *(f"k.{key}" for key in _KLINE_KEYS),
    "openInterest",
    "time",
    "symbol",
)
"""Keys of the kinds added after the first four (trade, markPrice, forceOrder, kline, open interest): their slots
follow the first ones', so the first slots keep their numbers."""

COMBINED_PATHS: tuple[str, ...] = (
    *(f"$.{key}" for key in _PREFIX_KEYS),
    *(f"$.f.data.{key}" for key in _PAYLOAD_KEYS),
    "$.symbol",
    *(f"$.f.data.{key}" for key in _SNAPSHOT_KEYS),
    *(f"$.f.data.{key}" for key in _MORE_PAYLOAD_KEYS),
)
"""Paths for a line whose frame is a combined-stream message (``{"stream":..., "data": {...}}``)."""

PLAIN_PATHS: tuple[str, ...] = tuple(path.replace("$.f.data.", "$.f.") for path in COMBINED_PATHS)
"""The same keys for a raw-stream frame or a REST snapshot body (fields directly under ``f``)."""

COMBINED_MARK = ',"f":{"stream":'
"""How a combined-stream frame starts inside a record; any other line is read with ``PLAIN_PATHS``. A frame the
test misclassifies loses its fields and is quarantined with their names, never written wrong."""


def slot(plain_path: str) -> str:
    """The column holding the text at ``plain_path`` (or at its combined-stream twin)."""
    return f"v{PLAIN_PATHS.index(plain_path) + 1}"


def prefix(key: str) -> str:
    """The slot of a record prefix key (``t``, ``c``, ``n``, ``k``, ``s``)."""
    return slot(f"$.{key}")


def payload(key: str) -> str:
    """The slot of a frame payload key."""
    return slot(f"$.f.{key}")


SLOTS = tuple(slot(path) for path in PLAIN_PATHS)
_SLOT_NAME = re.compile(r"\bv[0-9]+\b")


def slots_read(sql: str) -> set[str]:
    """The slots a piece of SQL reads."""
    return set(_SLOT_NAME.findall(sql))


MACROS = (
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
class Conversion:
    """How a column is an exact conversion of JSON text, so that a reader that converts the text itself (the compiled
    scanner, ``framescan.py``) can put its typed values in place of ``slots``: the column is ``convert`` (``int``:
    ``exact_int``, ``dec``: ``exact_dec``) of ``text``, an expression that selects one of ``slots``, and
    ``problem(value, text)`` is its problem SQL over the value column and that text."""

    convert: str
    text: str
    slots: tuple[str, ...]
    problem: Callable[[str, str], str]


@dataclass(frozen=True)
class Column:
    """One output column: its SQL over the slots and the SQL naming its problem (NULL when valid).

    A ``derived`` column is computed from other columns of valid rows only (``latency_ms``: on an implausible
    time the subtraction could overflow).
    """

    name: str
    sql: str
    problem: str | None = None
    derived: bool = False
    conversion: Conversion | None = None


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
    checks: tuple[str, ...] = ()
    """SQL naming problems of a row that no column carries (a field that must repeat another), NULL when valid."""

    @property
    def stored(self) -> tuple[str, ...]:
        """Columns computed from the slots (all but the derived ones)."""
        return tuple(column.name for column in self.columns if not column.derived)


def _converted(
    name: str, convert: str, text: str, slots: tuple[str, ...], problem: Callable[[str, str], str]
) -> Column:
    """The column ``convert`` of ``text`` (``int``: ``exact_int``, ``dec``: ``exact_dec``), ``text`` selecting one of
    ``slots``; ``problem(value, text)`` names its problem."""
    sql = f"exact_{convert}({text})"
    return Column(name, sql, problem(name, text), conversion=Conversion(convert, text, slots, problem))


def _provenance() -> tuple[Column, ...]:
    t = prefix("t")
    return (
        _converted(
            "recv_time_ns", "int", t, (t,), lambda v, x: rules.int_problem_sql(v, x, "t", min_value=rules.MIN_TIME_NS)
        ),
        Column("conn_id", prefix("c"), rules.present_problem_sql(prefix("c"), "c")),
        Column("segment", "$segment"),
        Column("line", "line"),
    )


def _id(name: str, key: str, text: str | None = None) -> Column:
    text = text or payload(key)
    return _converted(name, "int", text, (text,), lambda v, x: rules.int_problem_sql(v, x, key))


def _time(name: str, key: str, text: str | None = None, slots: tuple[str, ...] | None = None) -> Column:
    text = text or payload(key)

    def problem(value: str, text: str) -> str:
        return rules.int_problem_sql(value, text, key, min_value=rules.MIN_TIME_MS, recv_ns="recv_time_ns")

    return _converted(name, "int", text, slots or (text,), problem)


def _dec(name: str, key: str, sign: str = "positive") -> Column:
    text = payload(key)
    return _converted(name, "dec", text, (text,), lambda v, x: rules.decimal_problem_sql(v, x, key, sign=sign))


def _bool(name: str, key: str) -> Column:
    return Column(name, f"json_bool({payload(key)})", rules.bool_problem_sql(name, payload(key), key))


def _text(name: str, key: str, choices: tuple[str, ...] | None = None) -> Column:
    text = payload(key)
    problem = rules.choice_problem_sql(text, key, choices) if choices else rules.present_problem_sql(text, key)
    return Column(name, text, problem)


def _optional_id(name: str, key: str) -> Column:
    """An id the exchange sends as ``-1`` when there is none (a kline without trades): NULL then."""
    text = payload(key)
    value = f"CASE WHEN {text} <> '-1' THEN exact_int({text}) END"
    return Column(name, value, f"CASE WHEN {text} <> '-1' THEN {rules.int_problem_sql(value, text, key)} END")


def _levels(name: str, text: str, key: str, *, zero_qty: bool) -> Column:
    return Column(name, f"json_levels({text})", rules.levels_problem_sql(name, text, key, zero_qty=zero_qty))


_LATENCY = Column("latency_ms", "recv_time_ns // 1000000 - event_time_ms", derived=True)
_IS_FRAME = f"{prefix('k')} = 'frame' AND {payload('e')} = "
_PAYLOAD_SYMBOL_SQL = f"symbol_name({payload('s')})"
_IS_REST_TRADE = f"{prefix('k')} = 'rest_trade'"
_IS_OPEN_INTEREST = f"{prefix('k')} = 'open_interest'"
_TRADE_SYMBOL = f"coalesce({payload('s')}, {slot('$.symbol')})"
"""A REST trade carries no ``s``: the collector writes its symbol beside it."""

KINDS: tuple[KindSpec, ...] = (
    KindSpec(
        kind="prices",
        route=f"({_IS_FRAME}'aggTrade' OR {_IS_REST_TRADE})",
        columns=(
            _time(
                "event_time_ms",
                "E",
                f"CASE WHEN {_IS_REST_TRADE} THEN {payload('T')} ELSE {payload('E')} END",
                (payload("T"), payload("E")),
            ),
            _time("trade_time_ms", "T"),
            _id("agg_trade_id", "a"),
            _id("first_trade_id", "f"),
            _id("last_trade_id", "l"),
            _dec("price", "p"),
            _dec("qty", "q"),
            _bool("is_buyer_maker", "m"),
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
            _levels("bids", payload("b"), "b", zero_qty=True),
            _levels("asks", payload("a"), "a", zero_qty=True),
            _LATENCY,
            *_provenance(),
        ),
        symbol_sql=_PAYLOAD_SYMBOL_SQL,
        symbol_text=payload("s"),
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
        symbol_text=payload("s"),
        time_column="event_time_ms",
        id_column="update_id",
    ),
    KindSpec(
        kind="depth_snapshot",
        route=f"{prefix('k')} = 'snapshot'",
        columns=(
            _time("event_time_ms", "E"),
            _time("transaction_time_ms", "T"),
            _id("last_update_id", "lastUpdateId", slot("$.f.lastUpdateId")),
            _levels("bids", slot("$.f.bids"), "bids", zero_qty=False),
            _levels("asks", slot("$.f.asks"), "asks", zero_qty=False),
            *_provenance(),
        ),
        symbol_sql=f"symbol_name({slot('$.symbol')})",
        symbol_text=slot("$.symbol"),
        time_column="event_time_ms",
        id_column="last_update_id",
    ),
    KindSpec(
        kind="trades",
        route=_IS_FRAME + "'trade'",
        columns=(
            _time("event_time_ms", "E"),
            _time("trade_time_ms", "T"),
            _id("trade_id", "t"),
            _dec("price", "p"),
            _dec("qty", "q"),
            _bool("is_buyer_maker", "m"),
            Column("order_type", payload("X")),
            _LATENCY,
            *_provenance(),
        ),
        symbol_sql=_PAYLOAD_SYMBOL_SQL,
        symbol_text=payload("s"),
        time_column="trade_time_ms",
        id_column="trade_id",
    ),
    KindSpec(
        kind="mark_price",
        route=_IS_FRAME + "'markPriceUpdate'",
        columns=(
            _time("event_time_ms", "E"),
            _dec("mark_price", "p"),
            _dec("index_price", "i", "non_negative"),
            _dec("estimated_settle_price", "P", "non_negative"),
            _dec("funding_rate", "r", "any"),
            _time("next_funding_time_ms", "T"),
            _LATENCY,
            *_provenance(),
        ),
        symbol_sql=_PAYLOAD_SYMBOL_SQL,
        symbol_text=payload("s"),
        time_column="event_time_ms",
        id_column="event_time_ms",
    ),
    KindSpec(
        kind="liquidations",
        route=_IS_FRAME + "'forceOrder'",
        columns=(
            _time("event_time_ms", "E"),
            _time("trade_time_ms", "o.T"),
            _text("side", "o.S", ("BUY", "SELL")),
            _text("order_type", "o.o"),
            _text("time_in_force", "o.f"),
            _text("status", "o.X"),
            _dec("price", "o.p"),
            _dec("avg_price", "o.ap", "non_negative"),
            _dec("orig_qty", "o.q"),
            _dec("last_filled_qty", "o.l", "non_negative"),
            _dec("filled_qty", "o.z", "non_negative"),
            _LATENCY,
            *_provenance(),
        ),
        symbol_sql=f"symbol_name({payload('o.s')})",
        symbol_text=payload("o.s"),
        time_column="trade_time_ms",
        id_column="event_time_ms",
    ),
    KindSpec(
        kind="klines",
        route=_IS_FRAME + "'kline'",
        columns=(
            _time("event_time_ms", "E"),
            _time("open_time_ms", "k.t"),
            _time("close_time_ms", "k.T"),
            _text("interval", "k.i"),
            _optional_id("first_trade_id", "k.f"),
            _optional_id("last_trade_id", "k.L"),
            _dec("open", "k.o"),
            _dec("high", "k.h"),
            _dec("low", "k.l"),
            _dec("close", "k.c"),
            _dec("volume", "k.v", "non_negative"),
            _dec("quote_volume", "k.q", "non_negative"),
            _dec("taker_buy_volume", "k.V", "non_negative"),
            _dec("taker_buy_quote_volume", "k.Q", "non_negative"),
            _id("trade_count", "k.n"),
            _bool("is_closed", "k.x"),
            _LATENCY,
            *_provenance(),
        ),
        symbol_sql=_PAYLOAD_SYMBOL_SQL,
        symbol_text=payload("s"),
        time_column="open_time_ms",
        id_column="open_time_ms",
        keep_first=KEEP_FIRST["klines"] + ", line",
        checks=(rules.same_text_problem_sql(payload("k.s"), "k.s", payload("s"), "s"),),
    ),
    KindSpec(
        kind="open_interest",
        route=_IS_OPEN_INTEREST,
        columns=(
            _time("event_time_ms", "time"),
            _dec("open_interest", "openInterest", "non_negative"),
            *_provenance(),
        ),
        checks=(rules.same_text_problem_sql(payload("symbol"), "symbol", slot("$.symbol"), "the requested symbol"),),
        symbol_sql=f"symbol_name({slot('$.symbol')})",
        symbol_text=slot("$.symbol"),
        time_column="event_time_ms",
        id_column="event_time_ms",
    ),
)
KIND_BY_NAME = {spec.kind: spec for spec in KINDS}


def _replaced(spec: KindSpec, columns: dict[str, Column], route: str | None = None) -> KindSpec:
    """``spec`` with the columns named in ``columns`` replaced (same names, same order), and its route if given."""
    replaced = tuple(columns.get(column.name, column) for column in spec.columns)
    return dataclasses.replace(spec, columns=replaced, route=route or spec.route)


def _first_id_minus_one() -> Column:
    """``prev_final_update_id`` of a spot diff, which names no predecessor: ``U - 1`` (spot continues the chain when
    ``U`` is the previous ``u`` + 1), so the book, continuity and completeness follow one rule for every market."""
    first = f"exact_int({payload('U')})"
    return Column(
        "prev_final_update_id",
        f"CASE WHEN {first} > 0 THEN {first} - 1 END",
        f"CASE WHEN {first} = 0 THEN 'U: 0 has no previous update id' END",
    )


_RECEIVE_MS = Column("event_time_ms", f"exact_int({prefix('t')}) // 1000000")
"""The event time of a message that carries none (spot ``bookTicker`` and REST depth): its receive time, whose
problems ``recv_time_ns`` names."""
_RECEIVE_MS_AS_TRANSACTION = dataclasses.replace(_RECEIVE_MS, name="transaction_time_ms")
_IS_SPOT_BOOK_TICKER = f"{prefix('k')} = 'frame' AND {payload('e')} IS NULL AND ends_with({prefix('s')}, '@bookTicker')"
"""A spot ``bookTicker`` has no ``e``: its stream names it."""


def _spot(spec: KindSpec) -> KindSpec:
    """``spec`` as spot sends it: diffs without ``pu`` and ``T``, book tickers and snapshots without any time."""
    received = {"event_time_ms": _RECEIVE_MS, "transaction_time_ms": _RECEIVE_MS_AS_TRANSACTION}
    if spec.kind == "orderbook":
        transaction = Column("transaction_time_ms", f"exact_int({payload('E')})")
        return _replaced(spec, {"transaction_time_ms": transaction, "prev_final_update_id": _first_id_minus_one()})
    if spec.kind == "bookticker":
        return _replaced(spec, received, route=_IS_SPOT_BOOK_TICKER)
    if spec.kind == "depth_snapshot":
        return _replaced(spec, received)
    return spec


SPOT_KINDS = tuple(_spot(spec) for spec in KINDS)
"""The kinds as spot sends them (``harvest_pipeline.markets``: ``SPOT``); futures markets send ``KINDS``."""


def kinds_for(market: Market) -> tuple[KindSpec, ...]:
    """How ``market``'s messages become the raw kinds: ``KINDS`` for the futures markets (COIN-M's extra ``ps`` is
    ignored), ``SPOT_KINDS`` for spot."""
    return SPOT_KINDS if market.dialect == "spot" else KINDS


NAMES = {spec.kind: tuple(column.name for column in spec.columns) for spec in KINDS}
for _kind, _names in NAMES.items():
    assert list(_names) == schema.RAW_KINDS[_kind].names, _kind

_RECORD_CHECKS = (rules.int_problem_sql(f"exact_int({prefix('n')})", prefix("n"), "n"),)
"""Problems of the record prefix that no output column carries (the sequence number ``n``)."""


def _values_and_problems(spec: KindSpec, subscriptions: dict[str, set[str]]) -> tuple[str, str]:
    values = ", ".join(f"{column.sql} AS {column.name}" for column in spec.columns if not column.derived)
    problems = ", ".join(
        [
            *(column.problem for column in spec.columns if column.problem),
            *spec.checks,
            *_RECORD_CHECKS,
            rules.present_problem_sql("stream", "s (stream)"),
            rules.symbol_problem_sql("symbol", spec.symbol_text, "stream"),
            rules.unsubscribed_problem_sql(prefix("c"), "stream", subscriptions),
        ]
    )
    return f"{values}, {spec.symbol_sql} AS symbol, {prefix('s')} AS stream", problems


def checked_sql(
    spec: KindSpec,
    source: str,
    slots: tuple[str, ...],
    subscriptions: dict[str, set[str]],
    keep: tuple[str, ...] = (),
) -> str:
    """SQL of the rows of ``spec`` over ``source`` (``line``, ``slots`` and the columns to ``keep``): the stored
    columns, ``symbol``, ``stream``, ``problems`` (every problem of the row joined with ``; ``, empty when the row is
    valid) and ``keep``. ``subscriptions``: connection id -> the streams its connect record lists
    (``rules.unsubscribed_problem_sql``)."""
    values, problems = _values_and_problems(spec, subscriptions)
    kept = "".join(f", {column}" for column in keep)
    return f"""
        SELECT {", ".join(spec.stored)}, symbol, stream, concat_ws('; ', {problems}) AS problems{kept}
        FROM (SELECT {", ".join(slots)}{kept}, {values} FROM {source})
        """


def slots_of(spec: KindSpec) -> set[str]:
    """Every slot ``checked_sql`` reads for ``spec`` (with a subscription, so the subscription check counts too)."""
    return slots_read(" ".join(_values_and_problems(spec, {"conn": {"stream"}})))


def output_sql(spec: KindSpec, valid: str = "true") -> str:
    """The SELECT list of a kind's rows as written, over rows of ``checked_sql``: the schema columns (derived ones
    computed here), ``date`` (UTC event date), ``symbol`` and ``stream``. Derived columns and the date are computed
    only where the SQL ``valid`` holds (on an implausible time they could overflow), else NULL."""
    derived = {column.name: column.sql for column in spec.columns if column.derived}
    date = f"strftime(CAST(epoch_ms({spec.time_column}) AS DATE), '%Y-%m-%d')"
    columns = [
        f"CASE WHEN {valid} THEN {derived[name]} END AS {name}" if name in derived else name
        for name in NAMES[spec.kind]
    ]
    return ", ".join([*columns, f"CASE WHEN {valid} THEN {date} END AS date", "symbol", "stream"])

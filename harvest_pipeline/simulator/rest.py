"""The REST endpoints: depth snapshots, aggregate and individual trades, klines, the best bid/ask, exchange info, open
interest, 24 h statistics and the premium index, with Binance's request-weight budget.

Which endpoints a market has, under which prefix (``/fapi/v1/``, ``/dapi/v1/``, ``/api/v3/``), what they weigh and
which depth limits they take is the market's dialect (``dialects``); an endpoint the market lacks answers 404 like any
unknown path under its prefix.

Every response carries ``X-MBX-USED-WEIGHT-1M``. A request that would exceed the per-minute budget gets HTTP 429 with
``Retry-After`` (seconds to the next minute); the ``rest_status`` fault makes the next requests fail on purpose, with
the code Binance sends with that status (``rest_params``). The weight charged per clock minute and the rows of every
HTTP 200 answer per endpoint and symbol go to the accounting (``RestTally``). Parameters are read and refused as
Binance does (``rest_params``); trades, klines and the best bid/ask come from the exchange's model, depth and
aggTrades from the market state (the model's, or the replay's).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qs, urlsplit

from harvest_pipeline.simulator import rest_params, wire
from harvest_pipeline.simulator.accounting import RestTally
from harvest_pipeline.simulator.exchange import Exchange, SymbolFeed
from harvest_pipeline.simulator.faults import FaultState
from harvest_pipeline.simulator.klines import INTERVAL_MS, select_klines
from harvest_pipeline.simulator.rest_params import RestError, integer, limit_of, optional_integer, time_window
from harvest_pipeline.simulator.trade_history import MAX_TIME_WINDOW_MS, AggTradeQuery, select_individual

NO_SYMBOL = ""
"""The accounting's symbol for answers about no symbol (exchangeInfo, time, ping)."""

Answer = tuple[bytes, list[str]]
"""A successful body and the symbols it carries rows of."""


class RestResponse(NamedTuple):
    """Status, extra headers and JSON body of one REST answer."""

    status: int
    headers: dict[str, str]
    body: bytes


class WeightBudget:
    """Request weight used in the current clock minute, against a per-minute limit."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.time):
        self.limit = limit
        self.clock = clock
        self.minute = -1
        self.used = 0

    def current(self) -> int:
        """Weight used so far this minute."""
        self._roll()
        return self.used

    def try_charge(self, weight: int) -> bool:
        """Charge ``weight`` if it fits this minute's budget."""
        self._roll()
        if self.used + weight > self.limit:
            return False
        self.used += weight
        return True

    def seconds_to_reset(self) -> int:
        """Whole seconds until the next minute starts (the ``Retry-After`` of a 429)."""
        return max(1, math.ceil(60 - self.clock() % 60))

    def _roll(self) -> None:
        minute = int(self.clock() // 60)
        if minute != self.minute:
            self.minute, self.used = minute, 0


class MarketState(Protocol):
    """Where depth and trade answers come from: the live market model or the replayed frames."""

    def depth_body(self, symbol: str, limit: int, now_ms: int) -> bytes:
        """A depth snapshot body; ``LookupError`` with a message when there is none for ``symbol``."""
        ...

    def agg_trades_body(self, symbol: str, query: AggTradeQuery, now_ms: int) -> bytes:
        """An aggTrades body; ``LookupError`` with a message when there is none for ``symbol``."""
        ...


Route = tuple[Callable[[Mapping[str, str]], int], Callable[[dict[str, str]], Answer]]
"""An endpoint's request weight and answer, both from the query."""
NEEDS_API_KEY = frozenset({"historicalTrades"})
"""Endpoints answered only with an ``X-MBX-APIKEY`` header (any non-empty key)."""


class RestApi:
    """Answers the market's REST GET requests (``/fapi/v1/...`` on USDⓈ-M) from the exchange's (or the replay's)
    current state."""

    def __init__(
        self,
        exchange: Exchange,
        market: MarketState,
        faults: FaultState,
        weight_limit: int,
        tally: RestTally,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ):
        self.exchange = exchange
        self.clock_ms = clock_ms
        self.market = market
        self.faults = faults
        self.budget = WeightBudget(weight_limit)
        self.tally = tally
        self.dialect = dialect = exchange.dialect
        self.prefix = dialect.rest_prefix
        self._api_root = self.prefix[: self.prefix.index("/", 1) + 1]
        depth_rule = dialect.depth_rule
        answers: dict[str, Callable[[dict[str, str]], Answer]] = {
            "aggTrades": self._agg_trades,
            "trades": self._trades,
            "historicalTrades": self._trades,
            "klines": self._klines,
            "ticker/bookTicker": self._book_ticker,
            "exchangeInfo": self._exchange_info,
            "time": lambda q: (b'{"serverTime":%d}' % self.clock_ms(), [NO_SYMBOL]),
            "ping": lambda q: (b"{}", [NO_SYMBOL]),
            "openInterest": self._open_interest,
            "ticker/24hr": self._ticker_24hr,
            "premiumIndex": self._premium_index,
        }
        self._routes: dict[str, Route] = {
            "depth": (lambda q: depth_rule.weight(integer(q, "limit", depth_rule.default_limit)), self._depth)
        }
        for endpoint, weight in dialect.rest_weights.items():
            self._routes[endpoint] = (weight, answers[endpoint])

    def handles(self, path: str) -> bool:
        """Whether ``path`` (with its query) is a REST request: anything under the market's API root (``/fapi/``)."""
        return urlsplit(path).path.startswith(self._api_root)

    def answer(self, path: str, headers: Mapping[str, str] | None = None) -> RestResponse:
        """The response to ``GET path`` with request ``headers``."""
        url = urlsplit(path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        self.tally.requests += 1
        forced = self.faults.take_rest_status()
        if forced is not None:
            status, retry_after = forced
            retry_headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after else {}
            return self._reject(status, retry_headers, *rest_params.forced_error(status))
        endpoint = url.path.removeprefix(self.prefix)
        route = self._routes.get(endpoint) if url.path.startswith(self.prefix) else None
        if route is None:
            return self._respond(404, wire.rest_error(-1000, f"unknown endpoint {url.path}"))
        weight_of, build = route
        try:
            if endpoint in NEEDS_API_KEY:
                rest_params.require_api_key(headers or {})
            weight = weight_of(query)
            if not self.budget.try_charge(weight):
                retry = str(self.budget.seconds_to_reset())
                return self._reject(429, {"Retry-After": retry}, *rest_params.TOO_MANY_REQUESTS)
            self.tally.charge(weight, self.budget.minute)
            body, symbols = build(query)
            self.tally.count_answer(endpoint, symbols)
            return self._respond(200, body)
        except RestError as exc:
            return self._respond(exc.status, wire.rest_error(exc.code, str(exc)))

    def _respond(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> RestResponse:
        return RestResponse(status, {**(headers or {}), "X-MBX-USED-WEIGHT-1M": str(self.budget.current())}, body)

    def _reject(self, status: int, headers: dict[str, str], code: int, message: str) -> RestResponse:
        key = str(status)
        self.tally.rejected[key] = self.tally.rejected.get(key, 0) + 1
        return self._respond(status, wire.rest_error(code, message), headers)

    def _depth(self, query: dict[str, str]) -> Answer:
        rule = self.dialect.depth_rule
        try:
            limit = rule.levels(integer(query, "limit", rule.default_limit))
        except ValueError as exc:
            raise RestError(-1130, str(exc)) from None
        symbol = query.get("symbol", "")
        try:
            return self.market.depth_body(symbol, limit, self.clock_ms()), [symbol.upper()]
        except LookupError as exc:
            raise RestError(-1121, str(exc)) from None

    def _agg_trades(self, query: dict[str, str]) -> Answer:
        limit = limit_of(query, 500, 1000)
        start_ms, end_ms = time_window(query, MAX_TIME_WINDOW_MS)
        selection = AggTradeQuery(optional_integer(query, "fromId"), start_ms, end_ms, limit)
        symbol = query.get("symbol", "")
        try:
            return self.market.agg_trades_body(symbol, selection, self.clock_ms()), [symbol.upper()]
        except LookupError as exc:
            raise RestError(-1121, str(exc)) from None

    def _trades(self, query: dict[str, str]) -> Answer:
        """``trades`` (the newest) and ``historicalTrades`` (from ``fromId``): the individual trades of the model."""
        limit = limit_of(query, 500, 1000)
        feed = self._feed(query)
        trades = select_individual(feed.history, optional_integer(query, "fromId"), limit, self.clock_ms())
        return wire.rest_rows([self.dialect.trade_row(feed.spec, trade) for trade in trades], True), [feed.spec.symbol]

    def _klines(self, query: dict[str, str]) -> Answer:
        feed = self._feed(query)
        interval_ms = INTERVAL_MS.get(rest_params.required(query, "interval"))
        if interval_ms is None:
            raise RestError(-1120, f"Invalid interval; valid intervals are {', '.join(INTERVAL_MS)}.")
        limit = limit_of(query, 500, 1500)
        start_ms, end_ms = time_window(query, None)
        klines = select_klines(feed.klines, interval_ms, start_ms, end_ms, limit)
        rows = [self.dialect.kline_row(feed.spec, kline) for kline in klines]
        return wire.rest_rows(rows, True), [feed.spec.symbol]

    def _book_ticker(self, query: dict[str, str]) -> Answer:
        """The best bid and ask each symbol's ``@bookTicker`` last sent (one object for ``symbol``, else a list)."""
        now_ms = self.clock_ms()
        return self._rows(
            lambda symbol: [
                self.dialect.book_ticker_row(feed.spec, feed.market.top(), now_ms) for feed in self._feeds(symbol)
            ],
            query,
        )

    def _feed(self, query: dict[str, str]) -> SymbolFeed:
        """The feed of the mandatory ``symbol`` (-1102 without, -1121 when it does not trade)."""
        return self._feeds(rest_params.required(query, "symbol"))[0]

    def _feeds(self, symbol: str | None) -> list[SymbolFeed]:
        """The feed of ``symbol``, or of every trading symbol when None; -1121 for a symbol that does not trade."""
        trading = self.exchange.trading
        if symbol is None:
            return list(trading.values())
        feed = trading.get(symbol.upper())
        if feed is None:
            raise RestError(-1121, "Invalid symbol.")
        return [feed]

    def _exchange_info(self, query: dict[str, str]) -> Answer:
        symbols = self.exchange.exchange_info_symbols()
        return self.dialect.exchange_info(symbols, self.budget.limit, self.clock_ms()), [NO_SYMBOL]

    def _open_interest(self, query: dict[str, str]) -> Answer:
        return self._rows(lambda symbol: self.exchange.open_interest_rows(symbol or "", self.clock_ms()), query)

    def _ticker_24hr(self, query: dict[str, str]) -> Answer:
        return self._rows(lambda symbol: self.exchange.ticker_24hr_rows(symbol, self.clock_ms()), query)

    def _premium_index(self, query: dict[str, str]) -> Answer:
        return self._rows(self.exchange.premium_index_rows, query)

    def _rows(self, rows_of: Callable[[str | None], list[dict[str, Any]]], query: dict[str, str]) -> Answer:
        """An answer of per-symbol rows from the market model: one object for ``symbol``, a list of all without."""
        symbol = query.get("symbol")
        try:
            rows = rows_of(symbol)
        except LookupError as exc:
            raise RestError(-1121, str(exc)) from None
        return wire.rest_rows(rows, as_list=symbol is None), [row["symbol"] for row in rows]

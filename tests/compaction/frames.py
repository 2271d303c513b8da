"""Realistic Binance USD-M frames and segments for compaction tests and the compaction benchmark, and the same frames
as COIN-M and spot send them (``as_coinm``, ``as_spot``).

Frames are byte strings shaped exactly like the exchange's combined-stream messages (reference/binance.md), so the
tests exercise the same key collisions (e/E, u/U, a/A, b/B, t/T) real data has.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from harvest_pipeline import segments

MS = 1_000_000


def agg_trade(symbol: str, agg_id: int, event_ms: int, price: str = "97123.40", qty: str = "0.012") -> bytes:
    """A combined-stream aggTrade frame (trade time 1 ms before the event time)."""
    data = {
        "e": "aggTrade",
        "E": event_ms,
        "s": symbol,
        "a": agg_id,
        "p": price,
        "q": qty,
        "f": agg_id * 3,
        "l": agg_id * 3 + 2,
        "T": event_ms - 1,
        "m": agg_id % 2 == 0,
    }
    return orjson.dumps({"stream": f"{symbol.lower()}@aggTrade", "data": data})


def depth_update(symbol: str, first_id: int, final_id: int, prev_id: int, event_ms: int, levels: int = 3) -> bytes:
    """A combined-stream depth diff frame with ``levels`` bid and ask levels (the last ask deletes its level)."""
    bids = [[f"{97000 - i * 0.1:.2f}", f"{0.001 * (i + 1):.3f}"] for i in range(levels)]
    asks = [[f"{97001 + i * 0.1:.2f}", f"{0.002 * (i + 1):.3f}"] for i in range(levels)]
    if asks:
        asks[-1][1] = "0"
    data = {
        "e": "depthUpdate",
        "E": event_ms,
        "T": event_ms - 2,
        "s": symbol,
        "U": first_id,
        "u": final_id,
        "pu": prev_id,
        "b": bids,
        "a": asks,
    }
    return orjson.dumps({"stream": f"{symbol.lower()}@depth@100ms", "data": data})


def book_ticker(symbol: str, update_id: int, event_ms: int) -> bytes:
    """A combined-stream bookTicker frame."""
    data = {
        "e": "bookTicker",
        "u": update_id,
        "E": event_ms,
        "T": event_ms - 1,
        "s": symbol,
        "b": "97000.10",
        "B": "1.250",
        "a": "97000.20",
        "A": "0.004",
    }
    return orjson.dumps({"stream": f"{symbol.lower()}@bookTicker", "data": data})


def snapshot_body(last_update_id: int, event_ms: int, levels: int = 5) -> bytes:
    """A ``/fapi/v1/depth`` response body."""
    body = {
        "lastUpdateId": last_update_id,
        "E": event_ms,
        "T": event_ms - 3,
        "bids": [[f"{97000 - i:.2f}", "1.000"] for i in range(levels)],
        "asks": [[f"{97001 + i:.2f}", "2.000"] for i in range(levels)],
    }
    return orjson.dumps(body)


@dataclass
class SymbolFeed:
    """Per-symbol exchange ids, advanced as frames are generated so they stay contiguous."""

    symbol: str
    agg_id: int = 1_000
    update_id: int = 5_000
    ticker_id: int = 9_000


@dataclass
class TrafficMix:
    """Generates realistic mixed traffic: bookTicker most often, then aggTrade, then depth diffs of 5-30 levels."""

    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
    start_ms: int = 1_767_225_600_000
    step_ms: int = 1
    seed: int = 7
    cuts: tuple[float, float] = (0.45, 0.82)
    """A uniform roll below the first cut is a bookTicker, below the second an aggTrade, else a depth diff
    (``(0.0, 1.0)``: aggTrade only)."""
    feeds: dict[str, SymbolFeed] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.feeds = {symbol: SymbolFeed(symbol) for symbol in self.symbols}
        self._random = random.Random(self.seed)
        self._now_ms = self.start_ms

    def frames(self, count: int) -> Iterable[tuple[str, bytes, int]]:
        """Yield ``count`` (stream, frame, event_ms) tuples in event-time order."""
        for _ in range(count):
            self._now_ms += self.step_ms
            feed = self.feeds[self._random.choice(self.symbols)]
            roll = self._random.random()
            if roll < self.cuts[0]:
                feed.ticker_id += self._random.randint(1, 3)
                yield (
                    f"{feed.symbol.lower()}@bookTicker",
                    book_ticker(feed.symbol, feed.ticker_id, self._now_ms),
                    self._now_ms,
                )
            elif roll < self.cuts[1]:
                feed.agg_id += 1
                yield f"{feed.symbol.lower()}@aggTrade", agg_trade(feed.symbol, feed.agg_id, self._now_ms), self._now_ms
            else:
                prev = feed.update_id
                feed.update_id += self._random.randint(1, 40)
                frame = depth_update(
                    feed.symbol, prev + 1, feed.update_id, prev, self._now_ms, levels=self._random.randint(5, 30)
                )
                yield f"{feed.symbol.lower()}@depth@100ms", frame, self._now_ms


@dataclass
class SegmentBuilder:
    """Writes a sealed segment through the real segment format, one connection, lines in order."""

    root: Path
    opened_at_ns: int = 1_767_225_600_000 * MS
    collector_id: str = "test"
    conn_id: str = "c1"
    lines: list[segments.Line] = field(default_factory=list)
    market: str = "usdm"

    def __post_init__(self) -> None:
        self._seq = 0

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def frame(self, stream: str, raw: bytes, recv_ms: int, conn_id: str | None = None) -> SegmentBuilder:
        """Append a data frame received at ``recv_ms`` (+ 5 ms of latency is the caller's choice)."""
        self.lines.append(segments.encode_frame(recv_ms * MS, conn_id or self.conn_id, self._next_seq(), stream, raw))
        return self

    def control(self, kind: str, recv_ms: int, stream: str | None = None, **fields: object) -> SegmentBuilder:
        """Append a control record (connect, gap, ...)."""
        self.lines.append(segments.encode_control(recv_ms * MS, self.conn_id, self._next_seq(), kind, stream, **fields))
        return self

    def snapshot(self, symbol: str, body: bytes, recv_ms: int) -> SegmentBuilder:
        """Append a REST depth snapshot record."""
        self.lines.append(segments.encode_snapshot(recv_ms * MS, "rest", self._next_seq(), symbol, body))
        return self

    def open_interest(self, symbol: str, body: bytes, recv_ms: int) -> SegmentBuilder:
        """Append a REST open interest record."""
        self.lines.append(segments.encode_open_interest(recv_ms * MS, "rest", self._next_seq(), symbol, body))
        return self

    def raw_line(self, data: bytes, recv_ms: int, stream: str | None = None) -> SegmentBuilder:
        """Append an arbitrary line (malformed input the collector format cannot produce by itself)."""
        self.lines.append(segments.Line(data.rstrip(b"\n") + b"\n", segments.KIND_FRAME, stream, recv_ms * MS))
        return self

    def seal(self, name: str | None = None) -> segments.SealedSegment:
        """Write and seal the segment; returns where it landed."""
        open_dir = self.root / "segments" / "open" / self.collector_id
        open_dir.mkdir(parents=True, exist_ok=True)
        name = name or segments.segment_name(self.opened_at_ns, self.collector_id, "b00t", 1)
        segment = segments.OpenSegment(open_dir, name, self.collector_id, self.opened_at_ns, market=self.market)
        segment.append(self.lines)
        segment.seal(self.root / "segments" / "sealed")
        return segments.find_sealed_segment(self.root / "segments" / "sealed", name)


def trade(symbol: str, trade_id: int, event_ms: int, price: str = "97123.40", qty: str = "0.004") -> bytes:
    """A combined-stream ``<sym>@trade`` frame (one individual trade)."""
    data = {
        "e": "trade",
        "E": event_ms,
        "T": event_ms - 1,
        "s": symbol,
        "t": trade_id,
        "p": price,
        "q": qty,
        "X": "MARKET",
        "m": trade_id % 3 == 0,
    }
    return orjson.dumps({"stream": f"{symbol.lower()}@trade", "data": data})


def mark_price(symbol: str, event_ms: int, funding_rate: str = "-0.00012500") -> bytes:
    """A combined-stream ``<sym>@markPrice@1s`` frame."""
    next_funding = (event_ms // 28_800_000 + 1) * 28_800_000
    data = {
        "e": "markPriceUpdate",
        "E": event_ms,
        "s": symbol,
        "p": "97010.12345678",
        "i": "97001.50000000",
        "P": "97003.25000000",
        "r": funding_rate,
        "T": next_funding,
    }
    return orjson.dumps({"stream": f"{symbol.lower()}@markPrice@1s", "data": data})


def force_order(symbol: str, event_ms: int, side: str = "SELL", qty: str = "0.014") -> bytes:
    """A combined-stream ``<sym>@forceOrder`` frame (the order nested under ``o``)."""
    order = {
        "s": symbol,
        "S": side,
        "o": "LIMIT",
        "f": "IOC",
        "q": qty,
        "p": "96950.00",
        "ap": "96990.10",
        "X": "FILLED",
        "l": "0.004",
        "z": qty,
        "T": event_ms - 2,
    }
    return orjson.dumps(
        {"stream": f"{symbol.lower()}@forceOrder", "data": {"e": "forceOrder", "E": event_ms, "o": order}}
    )


def kline(symbol: str, open_ms: int, event_ms: int, closed: bool, trades: int = 3) -> bytes:
    """A combined-stream ``<sym>@kline_1m`` frame of the minute opening at ``open_ms`` (``trades`` 0: no trade,
    ids ``-1``)."""
    k = {
        "t": open_ms,
        "T": open_ms + 59_999,
        "s": symbol,
        "i": "1m",
        "f": 500 if trades else -1,
        "L": 500 + trades - 1 if trades else -1,
        "o": "97000.10",
        "c": "97001.00" if trades else "97000.10",
        "h": "97002.00" if trades else "97000.10",
        "l": "96999.90" if trades else "97000.10",
        "v": f"{0.005 * trades:.3f}",
        "n": trades,
        "x": closed,
        "q": f"{485.0055 * trades:.4f}",
        "V": f"{0.002 * trades:.3f}",
        "Q": f"{194.0022 * trades:.4f}",
        "B": "0",
    }
    data = {"e": "kline", "E": event_ms, "s": symbol, "k": k}
    return orjson.dumps({"stream": f"{symbol.lower()}@kline_1m", "data": data})


def open_interest_body(symbol: str, time_ms: int, value: str = "10659.509") -> bytes:
    """A ``GET /fapi/v1/openInterest`` response body."""
    return orjson.dumps({"symbol": symbol, "openInterest": value, "time": time_ms})


def more_channel_frames(symbol: str, start_ms: int, seconds: int) -> Iterable[tuple[str, bytes, int]]:
    """``seconds`` of the channels added after the first three, as (stream, frame, event_ms) in event-time order:
    per second a mark price, four kline updates (the minute's closing one first when a minute ended), three trades,
    and a liquidation every seventh second."""
    trade_id = 7_000
    for second in range(seconds):
        at = start_ms + second * 1000
        yield f"{symbol.lower()}@markPrice@1s", mark_price(symbol, at), at
        for quarter in range(4):
            event_ms = at + 250 * quarter + 1
            minute = event_ms // 60_000 * 60_000
            if quarter == 0 and second and (event_ms - 1000) // 60_000 * 60_000 < minute:
                yield f"{symbol.lower()}@kline_1m", kline(symbol, minute - 60_000, event_ms, True), event_ms
            yield f"{symbol.lower()}@kline_1m", kline(symbol, minute, event_ms, False, trades=quarter), event_ms
        for _ in range(3):
            trade_id += 1
            yield f"{symbol.lower()}@trade", trade(symbol, trade_id, at + 500 + trade_id % 3), at + 500 + trade_id % 3
        if second % 7 == 3:
            yield f"{symbol.lower()}@forceOrder", force_order(symbol, at + 900), at + 900


COINM_CONTRACTS = {"BTCUSDT": ("BTCUSD_PERP", "BTCUSD"), "ETHUSDT": ("ETHUSD_PERP", "ETHUSD")}
"""The COIN-M contract (and its pair) standing in for a USDⓈ-M symbol of ``TrafficMix``."""


def as_coinm(stream: str, raw: bytes) -> tuple[str, bytes]:
    """A USDⓈ-M frame of ``TrafficMix`` as COIN-M sends it: the contract's symbol, ``ps`` on depth and book ticker."""
    frame = orjson.loads(raw)
    data = frame["data"]
    symbol, pair = COINM_CONTRACTS[data["s"]]
    data["s"] = symbol
    if data["e"] in ("depthUpdate", "bookTicker"):
        frame["data"] = {**{k: v for k, v in data.items() if k != "s"}, "s": symbol, "ps": pair}
    frame["stream"] = f"{symbol.lower()}@{stream.split('@', 1)[1]}"
    return frame["stream"], orjson.dumps(frame)


def as_spot(stream: str, raw: bytes) -> tuple[str, bytes]:
    """A USDⓈ-M frame of ``TrafficMix`` as spot sends it: diffs without ``pu`` and ``T`` (its ``U`` continues the
    previous ``u`` + 1 as the mix's ids do), book tickers without ``e``/``E``/``T``, trades with ``M``."""
    frame = orjson.loads(raw)
    data = frame["data"]
    if data["e"] == "depthUpdate":
        frame["data"] = {k: v for k, v in data.items() if k not in ("T", "pu")}
    elif data["e"] == "bookTicker":
        frame["data"] = {k: data[k] for k in ("u", "s", "b", "B", "a", "A")}
    else:
        data["M"] = True
    return stream, orjson.dumps(frame)

"""Poison values in one segment: each bad line becomes exactly one quarantine entry naming the field, every good line
its row, and the segment still reconciles (real segment files, real DuckDB, no Dagster)."""

from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from harvest_pipeline.compaction import SegmentUnreadable, compact_segment, quarantine_path, reconcile
from harvest_pipeline.paths import DataPaths
from tests.compaction.frames import (
    MS,
    SegmentBuilder,
    agg_trade,
    book_ticker,
    depth_update,
    force_order,
    kline,
    mark_price,
    open_interest_body,
    snapshot_body,
)
from tests.compaction.frames import (
    trade as individual_trade,
)
from tests.compaction.test_compaction import read_kind

MIDNIGHT_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
SUBSCRIBED = ["btcusdt@aggTrade", "btcusdt@bookTicker", "btcusdt@depth@100ms"]
SUBSCRIBED += ["btcusdt@trade", "btcusdt@markPrice@1s", "btcusdt@forceOrder", "btcusdt@kline_1m"]


class Literal:
    """A JSON number written verbatim (orjson refuses integers beyond 64 bits)."""

    def __init__(self, text: str):
        self.text = text


def with_data(frame: bytes, **fields: object) -> bytes:
    """A combined-stream frame with payload fields replaced (``Literal`` values written verbatim)."""
    message = orjson.loads(frame)
    literals = {}
    for key, value in fields.items():
        if isinstance(value, Literal):
            literals[f'"@literal-{key}"'.encode()] = value.text.encode()
            value = f"@literal-{key}"
        message["data"][key] = value
    data = orjson.dumps(message)
    for placeholder, text in literals.items():
        data = data.replace(placeholder, text)
    return data


def with_nested(frame: bytes, key: str, **fields: object) -> bytes:
    """A combined-stream frame with fields of the payload's object ``key`` (a forceOrder's ``o``, a kline's ``k``)
    replaced."""
    message = orjson.loads(frame)
    message["data"][key] = {**message["data"][key], **fields}
    return orjson.dumps(message)


def prefix_line(t: str, n: str, stream: str, frame: bytes, kind: str = "frame") -> bytes:
    """A record line with a hand-written prefix (the segment writer cannot produce absurd ``t``/``n``)."""
    return b'{"t":%b,"c":"c1","n":%b,"k":"%b","s":"%b","f":%b}' % (
        t.encode(),
        n.encode(),
        kind.encode(),
        stream.encode(),
        frame,
    )


class PoisonSegment:
    """A segment of good lines with one poison line after each; remembers what each line should become."""

    def __init__(self, root: Path):
        self.builder = SegmentBuilder(root).control(
            "connect", MIDNIGHT_MS, url="ws://x", route="market", streams=SUBSCRIBED
        )
        self.now_ms = MIDNIGHT_MS + 1000
        self.next_id = 100
        self.good: dict[str, set[int]] = {"prices": set(), "orderbook": set(), "bookticker": set()}
        self.poison: dict[int, str] = {}

    def good_frames(self) -> None:
        """One valid frame of each kind (ids the test expects as rows)."""
        self.now_ms += 10
        self.next_id += 10
        i, t = self.next_id, self.now_ms
        self.builder.frame("btcusdt@aggTrade", agg_trade("BTCUSDT", i, t), t + 3)
        self.builder.frame("btcusdt@bookTicker", book_ticker("BTCUSDT", i, t), t + 3)
        self.builder.frame("btcusdt@depth@100ms", depth_update("BTCUSDT", i - 9, i, i - 10, t), t + 3)
        self.good["prices"].add(i)
        self.good["bookticker"].add(i)
        self.good["orderbook"].add(i)

    def poison_frame(self, reason: str, stream: str, frame: bytes, conn_id: str | None = None) -> None:
        self.good_frames()
        self.builder.frame(stream, frame, self.now_ms + 4, conn_id=conn_id)
        self.poison[len(self.builder.lines)] = reason

    def poison_line(self, reason: str, line: bytes) -> None:
        self.good_frames()
        self.builder.raw_line(line, self.now_ms + 4)
        self.poison[len(self.builder.lines)] = reason

    def ids(self) -> tuple[int, int]:
        """An unused id and the current event time, for a poison frame."""
        self.next_id += 1
        return self.next_id, self.now_ms


def build_poison_segment(root: Path) -> PoisonSegment:
    seg = PoisonSegment(root)
    trade = "btcusdt@aggTrade"
    ticker = "btcusdt@bookTicker"
    depth = "btcusdt@depth@100ms"

    i, t = seg.ids()
    seg.poison_frame("prices: E is negative", trade, with_data(agg_trade("BTCUSDT", i, t), E=INT64_MIN))
    i, t = seg.ids()
    seg.poison_frame("bookticker: E is negative", ticker, with_data(book_ticker("BTCUSDT", i, t), E=INT64_MIN + 1))
    i, t = seg.ids()
    late = "prices: T is more than 1 day after the receive time t"
    seg.poison_frame(late, trade, with_data(agg_trade("BTCUSDT", i, t), T=INT64_MAX))
    i, t = seg.ids()
    seg.poison_frame("prices: T is negative", trade, with_data(agg_trade("BTCUSDT", i, t), T=-1000))
    i, t = seg.ids()
    seg.poison_frame("prices: T is before 2017-01-01", trade, with_data(agg_trade("BTCUSDT", i, t), T=1000))
    i, t = seg.ids()
    both_late = "prices: E is more than 1 day after the receive time t; T is more than 1 day after the receive time t"
    seg.poison_frame(both_late, trade, with_data(agg_trade("BTCUSDT", i, t), E=9 * 10**15, T=9 * 10**15))
    i, t = seg.ids()
    seg.poison_frame(
        "bookticker: E is more than 1 day after the receive time t",
        ticker,
        with_data(book_ticker("BTCUSDT", i, t), E=9 * 10**15),
    )
    i, t = seg.ids()
    seg.poison_frame("prices: p is not positive", trade, with_data(agg_trade("BTCUSDT", i, t), p="-97000.10"))
    i, t = seg.ids()
    seg.poison_frame("prices: q is not positive", trade, with_data(agg_trade("BTCUSDT", i, t), q="0"))
    i, t = seg.ids()
    seg.poison_frame("prices: a is outside int64", trade, with_data(agg_trade("BTCUSDT", i, t), a=2**63))
    i, t = seg.ids()
    seg.poison_frame("prices: f is outside int64", trade, with_data(agg_trade("BTCUSDT", i, t), f=Literal("9" * 40)))
    i, t = seg.ids()
    seg.poison_frame("prices: l is not an integer", trade, with_data(agg_trade("BTCUSDT", i, t), l=Literal("1.5")))
    i, t = seg.ids()
    seg.poison_frame("bookticker: u is negative", ticker, with_data(book_ticker("BTCUSDT", -5, t)))
    i, t = seg.ids()
    seg.poison_frame("bookticker: B is not positive", ticker, with_data(book_ticker("BTCUSDT", i, t), B="0"))
    i, t = seg.ids()
    seg.poison_frame("bookticker: a is not positive", ticker, with_data(book_ticker("BTCUSDT", i, t), a="-1"))
    i, t = seg.ids()
    seg.poison_frame("orderbook: pu is negative", depth, with_data(depth_update("BTCUSDT", i, i, i - 1, t), pu=-1))
    i, t = seg.ids()
    seg.poison_frame(
        "orderbook: U is outside int64",
        depth,
        with_data(depth_update("BTCUSDT", i, i, i - 1, t), U=Literal("-" + "9" * 20)),
    )
    i, t = seg.ids()
    seg.poison_frame(
        "orderbook: b has a level whose price is not positive",
        depth,
        with_data(depth_update("BTCUSDT", i, i, i - 1, t), b=[["0", "1.000"]]),
    )
    i, t = seg.ids()
    seg.poison_frame(
        "orderbook: a has a level whose qty is negative",
        depth,
        with_data(depth_update("BTCUSDT", i, i, i - 1, t), a=[["97001.00", "-0.5"]]),
    )
    i, t = seg.ids()
    unsubscribed = "prices: s (stream) is not among the streams of its connection's connect record"
    seg.poison_frame(unsubscribed, "xrpusdt@aggTrade", agg_trade("XRPUSDT", i, t))
    i, t = seg.ids()
    mismatch = "prices: s (symbol) does not match the symbol of the stream"
    seg.poison_frame(mismatch, trade, with_data(agg_trade("BTCUSDT", i, t), s="XRPUSDT"))
    i, t = seg.ids()
    good_trade = agg_trade("BTCUSDT", i, t)
    seg.poison_line("prices: t is negative", prefix_line("-5", "1", trade, good_trade))
    i, t = seg.ids()
    seg.poison_line("prices: t is outside int64", prefix_line("9" * 25, "1", trade, agg_trade("BTCUSDT", i, t)))
    i, t = seg.ids()
    recv = str((t + 4) * MS)
    seg.poison_line("prices: n is outside int64", prefix_line(recv, str(2**64), trade, agg_trade("BTCUSDT", i, t)))
    i, t = seg.ids()
    body = with_snapshot(snapshot_body(0, t), lastUpdateId=Literal(str(2**63)), E=1000)
    seg.poison_line(
        "depth_snapshot: E is before 2017-01-01; lastUpdateId is outside int64",
        b'{"t":%d,"c":"rest","n":9,"k":"snapshot","s":"btcusdt@depthSnapshot","symbol":"BTCUSDT","f":%b}'
        % ((t + 4) * MS, body),
    )
    i, t = seg.ids()
    seg.poison_frame("trades: t is negative", "btcusdt@trade", individual_trade("BTCUSDT", -3, t))
    i, t = seg.ids()
    seg.poison_frame(
        "trades: m is not true or false", "btcusdt@trade", with_data(individual_trade("BTCUSDT", i, t), m="yes")
    )
    mark = "btcusdt@markPrice@1s"
    i, t = seg.ids()
    ninth = "mark_price: r is not an exact DECIMAL(18, 8)"
    seg.poison_frame(ninth, mark, with_data(mark_price("BTCUSDT", t), r="0.000100001"))
    i, t = seg.ids()
    seg.poison_frame("mark_price: i is negative", mark, with_data(mark_price("BTCUSDT", t), i="-1.5"))
    i, t = seg.ids()
    seg.poison_frame(
        "mark_price: missing T",
        mark,
        orjson.dumps(
            {
                "stream": mark,
                "data": {
                    key: value for key, value in orjson.loads(mark_price("BTCUSDT", t))["data"].items() if key != "T"
                },
            }
        ),
    )
    liquidation = "btcusdt@forceOrder"
    i, t = seg.ids()
    side = "liquidations: o.S is not one of BUY/SELL"
    seg.poison_frame(side, liquidation, with_nested(force_order("BTCUSDT", t), "o", S="sell"))
    i, t = seg.ids()
    seg.poison_frame("liquidations: o.z is negative", liquidation, with_nested(force_order("BTCUSDT", t), "o", z="-1"))
    i, t = seg.ids()
    seg.poison_frame(
        "liquidations: missing s (symbol)", liquidation, with_nested(force_order("BTCUSDT", t), "o", s=None)
    )
    candle = "btcusdt@kline_1m"
    i, t = seg.ids()
    seg.poison_frame("klines: k.v is negative", candle, with_nested(kline("BTCUSDT", t, t, False), "k", v="-0.5"))
    i, t = seg.ids()
    seg.poison_frame("klines: k.s differs from s", candle, with_nested(kline("BTCUSDT", t, t, False), "k", s="ETHUSDT"))
    i, t = seg.ids()
    seg.poison_frame("klines: k.f is negative", candle, with_nested(kline("BTCUSDT", t, t, False), "k", f=-2))
    i, t = seg.ids()
    interest = b'{"t":%d,"c":"rest","n":9,"k":"open_interest","s":"btcusdt@openInterest","symbol":"BTCUSDT","f":%b}'
    seg.poison_line(
        "open_interest: openInterest is negative", interest % ((t + 4) * MS, open_interest_body("BTCUSDT", t, "-0.001"))
    )
    i, t = seg.ids()
    seg.poison_line(
        "open_interest: symbol differs from the requested symbol",
        interest % ((t + 4) * MS, open_interest_body("ETHUSDT", t)),
    )
    seg.poison_line("record field 't' missing or not int", b'{"t":%b,"c":"c1","n":5,"k":"gap"}' % (b"9" * 25))
    seg.poison_line("gap record: t is outside int64", b'{"t":18446744073709551615,"c":"c1","n":5,"k":"gap"}')
    seg.poison_line("gap record: t is before 2017-01-01", b'{"t":1000,"c":"c1","n":5,"k":"gap"}')
    seg.poison_line(
        "gap record: expected is outside int64",
        b'{"t":%d,"c":"c1","n":5,"k":"gap","expected":%b}' % (seg.now_ms * MS, b"1" * 30),
    )
    seg.good_frames()
    return seg


def with_snapshot(body: bytes, **fields: object) -> bytes:
    """A REST depth body with fields replaced (``Literal`` values written verbatim)."""
    return with_data(orjson.dumps({"data": orjson.loads(body)}), **fields)[len(b'{"data":') : -1]


def test_each_poison_value_is_one_quarantine_entry_naming_its_field_and_good_lines_all_land(tmp_path):
    seg = build_poison_segment(tmp_path)
    # kept, not quarantined: a depth level with qty 0 (level removed), a frame of another connection that has no
    # connect record in this segment, and a snapshot
    i, t = seg.ids()
    seg.builder.frame("btcusdt@depth@100ms", depth_update("BTCUSDT", i, i, i - 1, t), t + 3)
    seg.good["orderbook"].add(i)
    seg.builder.frame("ethusdt@aggTrade", agg_trade("ETHUSDT", 7, t), t + 3, conn_id="c2")
    seg.builder.snapshot("BTCUSDT", snapshot_body(4_999, t), t + 10)
    seg.builder.control("gap", t + 11, "btcusdt@aggTrade", reason="test", expected=1, got=2, missing=1)
    # and one good row of each later channel: a negative funding rate, a kline minute without trades (ids -1)
    seg.builder.frame("btcusdt@trade", individual_trade("BTCUSDT", 42, t), t + 3)
    seg.builder.frame("btcusdt@markPrice@1s", mark_price("BTCUSDT", t, "-0.00030000"), t + 3)
    seg.builder.frame("btcusdt@forceOrder", force_order("BTCUSDT", t), t + 3)
    seg.builder.frame("btcusdt@kline_1m", kline("BTCUSDT", MIDNIGHT_MS, t, False, trades=0), t + 3)
    seg.builder.open_interest("BTCUSDT", open_interest_body("BTCUSDT", t, "0"), t + 4)
    sealed = seg.builder.seal()
    paths = DataPaths.from_root(tmp_path)

    report = compact_segment(sealed, paths)

    entries = [orjson.loads(line) for line in quarantine_path(paths.quarantine, sealed.name).read_bytes().splitlines()]
    reasons = {entry["line"]: entry["reason"] for entry in entries}
    assert len(entries) == len(reasons) == len(seg.poison)
    assert {line: reason.split(": not valid JSON")[0] for line, reason in reasons.items()} == seg.poison
    id_columns = {"prices": "agg_trade_id", "orderbook": "final_update_id", "bookticker": "update_id"}
    for kind, ids in seg.good.items():
        rows = read_kind(tmp_path, kind)
        assert {r[id_columns[kind]] for r in rows if r["symbol"] == "BTCUSDT"} == ids, kind
        assert {str(r["date"]) for r in rows} == {"2026-01-01"}, kind
    zero_level = [r for r in read_kind(tmp_path, "orderbook") if r["final_update_id"] == i]
    assert zero_level[0]["asks"][-1]["qty"] == Decimal("0")
    assert [r["agg_trade_id"] for r in read_kind(tmp_path, "prices") if r["symbol"] == "ETHUSDT"] == [7]
    assert [r["last_update_id"] for r in read_kind(tmp_path, "depth_snapshot")] == [4_999]
    assert [r["trade_id"] for r in read_kind(tmp_path, "trades")] == [42]
    assert [r["funding_rate"] for r in read_kind(tmp_path, "mark_price")] == [Decimal("-0.0003")]
    assert [r["side"] for r in read_kind(tmp_path, "liquidations")] == ["SELL"]
    [candle] = read_kind(tmp_path, "klines")
    assert (candle["first_trade_id"], candle["last_trade_id"], candle["trade_count"]) == (None, None, 0)
    assert [r["open_interest"] for r in read_kind(tmp_path, "open_interest")] == [Decimal("0")]
    events = read_kind(tmp_path, "events")
    quarantined = {e["line"]: e["reason"] for e in events if e["event"] == "quarantine"}
    assert quarantined == reasons
    assert {str(e["date"]) for e in events} == {"2026-01-01"}  # absurd receive times fall back to the segment's
    assert sorted(e["event"] for e in events if e["event"] != "quarantine") == ["connect", "gap"]
    reconciliation = reconcile(report)
    assert reconciliation.passed, reconciliation.detail
    assert report.quarantined == len(seg.poison)


def flip_a_digit(path: Path) -> None:
    """Change one digit of a price in place: same size, same line count, different bytes."""
    data = bytearray(path.read_bytes())
    at = data.index(b'"p":"9') + len(b'"p":"')
    data[at] = ord("8")
    path.write_bytes(bytes(data))


def test_a_flipped_digit_fails_the_segment_as_corrupt_before_anything_is_written(tmp_path):
    builder = SegmentBuilder(tmp_path)
    for agg_id in range(1, 20):
        builder.frame("btcusdt@aggTrade", agg_trade("BTCUSDT", agg_id, MIDNIGHT_MS + agg_id), MIDNIGHT_MS + agg_id + 3)
    sealed = builder.seal()
    flip_a_digit(sealed.path)
    meta = sealed.load_meta()

    with pytest.raises(SegmentUnreadable) as raised:
        compact_segment(sealed, DataPaths.from_root(tmp_path))

    assert str(raised.value).startswith(f"segment {sealed.name} is corrupt: sha256 ")
    assert f"!= sidecar {meta.sha256}" in str(raised.value)
    assert not (tmp_path / "parquet").exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda s: s.meta_path.unlink(), "cannot read its sidecar"),
        (lambda s: s.meta_path.write_bytes(b'{"lines": 3'), "is corrupt (unexpected end of data"),
        (lambda s: s.meta_path.write_bytes(b"[1, 2]"), "is corrupt ("),
        (lambda s: (s.meta_path.unlink(), s.meta_path.mkdir()), "cannot read its sidecar"),
        (lambda s: s.path.write_bytes(s.path.read_bytes() + b"{}\n"), "is corrupt: size "),
        (lambda s: s.path.unlink(), "cannot read its data file"),
    ],
    ids=["sidecar missing", "sidecar truncated", "sidecar not an object", "sidecar a folder", "extra line", "no data"],
)
def test_whole_segment_problems_raise_one_clear_permanent_error_naming_the_segment(tmp_path, damage, message):
    builder = SegmentBuilder(tmp_path).frame("btcusdt@aggTrade", agg_trade("BTCUSDT", 1, MIDNIGHT_MS), MIDNIGHT_MS + 3)
    sealed = builder.seal()
    damage(sealed)

    with pytest.raises(SegmentUnreadable) as raised:
        compact_segment(sealed, DataPaths.from_root(tmp_path))

    assert sealed.name in str(raised.value) and message in str(raised.value)

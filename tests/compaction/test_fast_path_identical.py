"""The fast roads change nothing: the same segment compacted three ways (the compiled scanner with the fast path, the
fast path's DuckDB JSON paths alone, the generic path forced) gives the same bytes in every Parquet file and in the
quarantine file, and the same report and reconciliation.

Segments: realistic traffic (mixed frames, connect/gap/disconnect records, a REST snapshot, REST trades that repeat,
differ from or fill websocket trades, frames repeated by an overlapping connection), and a hostile one (every poison
value of test_quarantine_rules.py plus wrong-case keys, 9th decimals, huge ids, exponents, quoted numbers, escapes,
whitespace, duplicate keys, a raw-stream frame, unsubscribed streams, a connect record spelt with an escape, JSON
that breaks after a perfect prefix, lines that are no record, and values on both sides of every limit of the
scanner), once more with a line that is not UTF-8 (which sends the whole segment down the slow line split), and a
segment of realistic lines mutated at random (seeded): every line the scanner accepts must mean what the SQL reads.
"""

import random
from pathlib import Path

import orjson
import pytest

from harvest_pipeline import segments
from harvest_pipeline.compaction import compact_segment, extract, fast, framescan, reconcile
from harvest_pipeline.compaction.lines import read_segment_lines
from harvest_pipeline.paths import DataPaths
from tests.compaction.frames import (
    MS,
    SegmentBuilder,
    TrafficMix,
    agg_trade,
    book_ticker,
    depth_update,
    more_channel_frames,
    open_interest_body,
    snapshot_body,
)
from tests.compaction.test_quarantine_rules import Literal, build_poison_segment, prefix_line, with_data

MIDNIGHT_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STREAMS = ["btcusdt@aggTrade", "btcusdt@bookTicker", "btcusdt@depth@100ms", "ethusdt@aggTrade"]
STREAMS += ["ethusdt@bookTicker", "ethusdt@depth@100ms"]
STREAMS += ["btcusdt@trade", "btcusdt@markPrice@1s", "btcusdt@forceOrder", "btcusdt@kline_1m"]


def with_more_channels(frames: list[tuple[str, bytes, int]]) -> list[tuple[str, bytes, int]]:
    """``frames`` and 70 s of trade, mark price, liquidation and kline frames (crossing a minute), by event time."""
    more = list(more_channel_frames("BTCUSDT", MIDNIGHT_MS + 15, 70))
    return sorted([*frames, *more], key=lambda frame: frame[2])


def rest_trade(builder: SegmentBuilder, symbol: str, trade: dict, recv_ms: int) -> None:
    """Append a ``rest_trade`` record: a trade of ``GET /fapi/v1/aggTrades`` (no ``e``, ``E`` or ``s``)."""
    stream = f"{symbol.lower()}@aggTrade"
    line = segments.encode_rest_trade(
        recv_ms * MS, "rest", len(builder.lines) + 1, stream, symbol, 1, orjson.dumps(trade)
    )
    builder.lines.append(line)


def realistic_segment(root: Path) -> segments.SealedSegment:
    builder = SegmentBuilder(root).control("connect", MIDNIGHT_MS, url="ws://x", route="public", streams=STREAMS)
    generated = []
    for stream, raw, event_ms in with_more_channels(list(TrafficMix(start_ms=MIDNIGHT_MS + 10).frames(4000))):
        builder.frame(stream, raw, event_ms + 4)
        generated.append((stream, orjson.loads(raw)["data"]))
    for stream, data in generated[200:260]:  # an overlapping connection repeats some frames
        builder.frame(stream, orjson.dumps({"stream": stream, "data": data}), data["E"] + 9, conn_id="c2")
    trades = [data for _, data in generated if data["e"] == "aggTrade" and data["s"] == "BTCUSDT"]
    recv_ms = trades[-1]["E"] + 50
    for data in trades[10:13]:  # fetched again by REST: same trades, then one whose price differs
        rest = {key: data[key] for key in ("a", "p", "q", "f", "l", "T", "m")}
        rest_trade(builder, "BTCUSDT", rest, recv_ms)
    rest_trade(builder, "BTCUSDT", {**rest, "p": "1.00"}, recv_ms)
    rest_trade(builder, "BTCUSDT", {**rest, "a": 1, "f": 1, "l": 1}, recv_ms)  # fills a hole
    builder.snapshot("BTCUSDT", snapshot_body(4_999, MIDNIGHT_MS + 20), MIDNIGHT_MS + 30)
    builder.open_interest("BTCUSDT", open_interest_body("BTCUSDT", MIDNIGHT_MS + 40), MIDNIGHT_MS + 42)
    builder.open_interest("BTCUSDT", open_interest_body("BTCUSDT", MIDNIGHT_MS + 40), MIDNIGHT_MS + 43)  # repeated
    builder.open_interest("BTCUSDT", open_interest_body("BTCUSDT", MIDNIGHT_MS + 70, "-1"), MIDNIGHT_MS + 72)
    builder.control("gap", recv_ms + 1, "btcusdt@aggTrade", reason="test", expected=1, got=2, missing=1)
    builder.control("disconnect", recv_ms + 2, reason="test")
    return builder.seal()


def hostile_segment(root: Path, invalid_utf8: bool = False) -> segments.SealedSegment:
    """Poison values between good frames; ``invalid_utf8`` adds a line that is not UTF-8 (it sends the whole segment
    down the slow line split)."""
    seg = build_poison_segment(root)
    b, t = seg.builder, seg.now_ms + 100
    trade, ticker, depth = "btcusdt@aggTrade", "btcusdt@bookTicker", "btcusdt@depth@100ms"
    good_trade = agg_trade("BTCUSDT", 7_000, t)
    frames = [
        (trade, good_trade),
        (trade, good_trade),  # the same frame twice
        (trade, good_trade.replace(b'"p":', b'"P":')),  # wrong-case keys
        (trade, good_trade.replace(b'"E":', b'"e2":').replace(b'"e":"aggTrade"', b'"e":"aggTrade","E":"x"')),
        (ticker, book_ticker("BTCUSDT", 7_001, t).replace(b'"B":', b'"b2":')),
        (trade, agg_trade("BTCUSDT", 7_002, t, price="97000.123456789")),  # 9th decimal
        (trade, agg_trade("BTCUSDT", 7_003, t, price="97000.100000000")),  # 9th decimal, zero
        (trade, agg_trade("BTCUSDT", 7_004, t, qty="0.000000001")),
        (trade, agg_trade("BTCUSDT", 7_005, t, price="1e3")),
        (trade, agg_trade("BTCUSDT", 7_006, t, qty="12345678901.5")),  # too large
        (trade, with_data(agg_trade("BTCUSDT", 7_007, t), a=Literal("99999999999999999999"))),
        (trade, with_data(agg_trade("BTCUSDT", 7_008, t), a=Literal("1e3"))),
        (trade, with_data(agg_trade("BTCUSDT", 7_009, t), a="7009", m="true")),  # quoted integer and boolean
        (trade, with_data(agg_trade("BTCUSDT", 7_010, t), s="btcusdt")),
        (trade, agg_trade("BTCUSDT", 7_011, t).replace(b'"data":{', b'"data" : { ')),  # whitespace
        (trade, agg_trade("BTCUSDT", 7_012, t).replace(b'"s":"BTCUSDT"', b'"s":"BTC\\u0055SDT"')),  # an escape
        (trade, agg_trade("BTCUSDT", 7_013, t).replace(b'"m":', b'"a":1,"m":')),  # duplicate key, first wins
        (trade, agg_trade("BTCUSDT", 7_014, t).replace(b'{"e":"aggTrade",', b'{"e":"aggTrade","e":"bookTicker",')),
        (trade, orjson.dumps(orjson.loads(agg_trade("BTCUSDT", 7_015, t))["data"])),  # a raw-stream frame
        (trade, with_data(agg_trade("BTCUSDT", 7_016, t), E=Literal("1.767225600e12"))),
        (ticker, book_ticker("BTCUSDT", 7_017, t).replace(b'"a":"97000.20"', b'"a":97000.2')),  # a number
        (ticker, with_data(book_ticker("BTCUSDT", 7_018, t), A="0.0040000000")),
        (depth, with_data(depth_update("BTCUSDT", 7_019, 7_019, 7_018, t), b=[["1.123456789", "1"]])),
        (depth, with_data(depth_update("BTCUSDT", 7_020, 7_020, 7_019, t), b=[["1.000000000", "1"]])),
        (depth, with_data(depth_update("BTCUSDT", 7_021, 7_021, 7_020, t), a=[["1", "2", "3"]])),
        (depth, with_data(depth_update("BTCUSDT", 7_022, 7_022, 7_021, t), a=[[1.5, "2"]])),
        (depth, with_data(depth_update("BTCUSDT", 7_023, 7_023, 7_022, t), b=[], a=[["1e2", "1"]])),
        (depth, with_data(depth_update("BTCUSDT", 7_024, 7_024, 7_023, t), b=[["97000.1", "-0"]])),
        (depth, with_data(depth_update("BTCUSDT", 7_025, 7_025, 7_024, t), b=None)),
        ("xrpusdt@depth@100ms", depth_update("XRPUSDT", 7_026, 7_026, 7_025, t)),  # unsubscribed
        (trade, agg_trade("BTCUSDT", 7_027, t)[:-3] + b',"x":[1,2}}'),  # breaks after a perfect prefix
        (trade, agg_trade("BTCUSDT", 7_028, t)[:-1] + b',"nq":"1"}'),  # an unknown key
        *scanner_limits(trade, ticker, depth, t),
    ]
    for stream, frame in frames:
        b.frame(stream, frame, t + 3)
    recv = b'"t":%d,"c":"c1","n":1,"k":"frame","s":"%b"' % ((t + 3) * MS, trade.encode())
    b.raw_line(b'{"f":%b,%b}' % (agg_trade("BTCUSDT", 9_001, t), recv), t)  # the frame first: no combined mark
    moved = b'{"data":%b,"stream":"%b"}' % (
        orjson.dumps(orjson.loads(agg_trade("BTCUSDT", 9_002, t))["data"]),
        trade.encode(),
    )
    b.raw_line(b'{%b,"f":%b}' % (recv, moved), t)  # "stream" after "data": no combined mark either
    if invalid_utf8:
        prefix = b'{"t":%d,"c":"c1","n":1,"k":"frame","s":"%b",' % ((t + 3) * MS, trade.encode())
        b.raw_line(prefix + b'"f":{"stream":"x","data":{"e":"aggTrade","s":"\xff"}}}', t)
    b.raw_line(prefix_line(str((t + 3) * MS), "1", trade, good_trade, kind="gap"), t)  # a data frame as a gap
    b.raw_line(prefix_line(str((t + 3) * MS), "-1", trade, good_trade), t)
    b.raw_line(prefix_line(str((t + 3) * MS), "01", trade, good_trade), t)  # leading zero: not JSON
    for line in (b"", b"{}", b"[]", b"null", b'{"t":1}'):
        b.raw_line(line, t)
    connect = b'{"t":%d,"c":"c3","n":1,"k":"conn\\u0065ct","streams":["ethusdt@aggTrade"]}' % ((t + 3) * MS)
    b.raw_line(connect, t)  # a connect record spelt with an escape: its connection's other streams are unsubscribed
    b.frame(trade, agg_trade("BTCUSDT", 7_100, t), t + 4, conn_id="c3")
    b.frame("ethusdt@aggTrade", agg_trade("ETHUSDT", 7_101, t), t + 4, conn_id="c3")
    rest_trade(b, "BTCUSDT", {"a": 7_000, "p": "97123.40", "q": "0.012", "f": 1, "l": 1, "T": t - 1, "m": True}, t)
    b.frame(trade, good_trade, t + 5, conn_id="c9")  # another connection, no connect record here
    b.lines.append(segments.encode_bad_frame((t + 6) * MS, "c1", 999, trade, b"\x00", "binary frame"))
    return b.seal()


def scanner_limits(trade: str, ticker: str, depth: str, t: int) -> list[tuple[str, bytes]]:
    """Frames on both sides of each limit of the compiled scanner (``_framescan.c``): what it accepts must be read as
    the SQL reads it, what it rejects goes to the SQL."""
    ids = iter(range(8_000, 9_000))

    def aggregate(**fields: object) -> tuple[str, bytes]:
        return trade, with_data(agg_trade("BTCUSDT", next(ids), t), **fields)

    def ticker_frame(**fields: object) -> tuple[str, bytes]:
        return ticker, with_data(book_ticker("BTCUSDT", next(ids), t), **fields)

    def diff(**fields: object) -> tuple[str, bytes]:
        first = next(ids)
        return depth, with_data(depth_update("BTCUSDT", first, first, first - 1, t), **fields)

    plain = agg_trade("BTCUSDT", next(ids), t)
    return [
        aggregate(a=Literal("9223372036854775807")),  # int64's largest: 19 digits
        aggregate(a=Literal("9223372036854775808")),  # one more
        aggregate(a=Literal("-9223372036854775808")),  # int64's smallest: negative
        aggregate(a=Literal("-0")),
        aggregate(a=Literal("-5")),
        aggregate(a=Literal("0")),
        aggregate(E=str(t)),  # a time as a string
        aggregate(p="0"),
        aggregate(p="0.0"),
        aggregate(p="00.5"),
        aggregate(p=".5"),
        aggregate(p="5."),
        aggregate(p="+5"),
        aggregate(p=" 5"),
        aggregate(p="9999999999.99999999"),  # DECIMAL(18, 8)'s largest
        aggregate(p="10000000000"),
        aggregate(q="0.00000001"),
        aggregate(m="false"),
        aggregate(m=Literal("1")),
        aggregate(s=""),
        (trade, plain.replace(b'"s":"BTCUSDT"', b'"s":"BTC\\u0055SDT"')),  # an escape in a value
        aggregate(x=Literal("1.5e-3")),  # unknown keys: numbers, null, a list, an object
        aggregate(x=Literal("null")),
        aggregate(x=[1]),
        aggregate(x={"y": 1}),
        (trade, plain.replace(b'"data":', b'"data":{},"data":')),  # two data objects
        (trade, plain.replace(b'"data":', b'"x":"\\u007f","data":')),  # an escape in an unknown key's value
        (trade, plain.replace(b'"s":"BTCUSDT"', '"s":"BTCUSDT\u00e9"'.encode())),  # non-ASCII
        (trade, plain.replace(b'"s":"BTCUSDT"', b'"s":"BTC\tUSDT"')),  # a raw tab inside a string
        (trade, plain.replace(b'"s":"BTCUSDT"', b'"s":"BTC\x7fUSDT"')),  # DEL
        ticker_frame(b="0"),
        ticker_frame(b="97000.123456780"),
        ticker_frame(a=Literal("97000")),
        ticker_frame(u=Literal("18446744073709551615")),  # uint64's largest
        diff(b=[], a=[]),
        diff(b=[["97000.1", "0"]]),
        diff(b=[["0", "1"]]),
        diff(b=[["0.00000001", "0.00000000"]]),
        diff(b=[["9999999999.99999999", "1"]]),
        diff(b=[["10000000000", "1"]]),
        diff(b=[["97000.1", "1"], ["97000.1", "2"]]),  # the same price twice: as sent
        diff(b=[["97000.1", "1"]], x=[["1", "2"]]),
        diff(b="97000.1"),
        diff(a=[["97000.1"]]),
        diff(a=[["97000.1", "1", "2"]]),
        diff(a=[[]]),
        diff(a=[["97000.1", None]]),
        (
            depth,
            with_data(depth_update("BTCUSDT", 8_900, 8_900, 8_899, t), b=[["1", "1"]]).replace(b'"a":', b'"b":[],"a":'),
        ),
    ]


def mutated_segment(root: Path, seed: int = 20261129) -> segments.SealedSegment:
    """Realistic frames, half of them with random edits (seeded) of their bytes: inserted, deleted or replaced
    characters drawn from JSON's own, so that many edits still parse."""
    rng = random.Random(seed)
    alphabet = b'{}[]",:0123456789.-eE+ tfnulasbBAqpmTUuP\\x'
    builder = SegmentBuilder(root).control("connect", MIDNIGHT_MS, url="ws://x", route="public", streams=STREAMS)
    for stream, raw, event_ms in with_more_channels(list(TrafficMix(start_ms=MIDNIGHT_MS + 10).frames(3000))):
        line = bytearray(segments.encode_frame((event_ms + 4) * MS, "c1", 1, stream, raw).data.rstrip(b"\n"))
        for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
            at = rng.randrange(len(line))
            edit = rng.random()
            if edit < 0.4:
                line[at : at + 1] = bytes([rng.choice(alphabet)])
            elif edit < 0.7:
                del line[at]
            else:
                line.insert(at, rng.choice(alphabet))
        builder.raw_line(bytes(line), event_ms)
    return builder.seal()


ROADS = {"scanner": (True, True), "fast": (True, False), "generic": (False, False)}
"""Road -> (fast.ENABLED, framescan.ENABLED)."""


def compact_every_way(sealed: segments.SealedSegment, root: Path, monkeypatch) -> dict[str, dict]:
    """Compact ``sealed`` on every road; what each wrote and reported."""
    outcome = {}
    for mode, (fast_path, scanner) in ROADS.items():
        monkeypatch.setattr(fast, "ENABLED", fast_path)
        monkeypatch.setattr(framescan, "ENABLED", scanner)
        paths = DataPaths.from_root(root / mode)
        report = compact_segment(sealed, paths)
        files = {
            str(path.relative_to(root / mode)): path.read_bytes()
            for path in sorted((root / mode).rglob("*"))
            if path.is_file()
        }
        reconciliation = reconcile(report)
        assert reconciliation.passed, reconciliation.detail
        outcome[mode] = {"files": files, "reconciliation": reconciliation.detail, "gaps": report.gaps}
    return outcome


def mutated_segment_other_seed(root: Path) -> segments.SealedSegment:
    return mutated_segment(root, seed=7)


def hostile_segment_not_utf8(root: Path) -> segments.SealedSegment:
    return hostile_segment(root, invalid_utf8=True)


def test_the_scanner_is_built():
    """``pip install -e .`` compiles it (a machine without a compiler runs the other roads, only slower)."""
    assert framescan.AVAILABLE


@pytest.mark.parametrize(
    "build",
    [realistic_segment, hostile_segment, hostile_segment_not_utf8, mutated_segment, mutated_segment_other_seed],
    ids=["realistic", "hostile", "hostile-not-utf8", "mutated", "mutated-other-seed"],
)
def test_every_road_writes_byte_identical_files(tmp_path, monkeypatch, build):
    sealed = build(tmp_path / "input")
    lines = read_segment_lines(sealed.path).table
    con = extract.connect()
    extract.extract_kinds(con, lines, sealed.name)
    [(generic_lines,)] = con.sql("SELECT count(*) FROM records").fetchall()  # the lines the generic path read
    assert generic_lines < lines.num_rows / 2, "most lines take the fast path (else this test proves little)"

    outcome = compact_every_way(sealed, tmp_path / "output", monkeypatch)

    generic = outcome["generic"]
    assert any("kind=prices" in name for name in generic["files"]) and any(
        "quarantine" in name for name in generic["files"]
    )
    if build is realistic_segment:
        for kind in ("trades", "mark_price", "liquidations", "klines", "open_interest"):
            assert any(f"kind={kind}/" in name for name in generic["files"]), kind
    for road in ("scanner", "fast"):
        assert sorted(outcome[road]["files"]) == sorted(generic["files"]), road
        for name, data in outcome[road]["files"].items():
            assert data == generic["files"][name], (road, name)
        assert outcome[road]["reconciliation"] == generic["reconciliation"], road
        assert outcome[road]["gaps"] == generic["gaps"], road

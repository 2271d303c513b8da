"""No frame can hurt its neighbours: whatever the exchange side sends, the frames around it in the same TCP read are
stored, the connection stays up, and gap detection keeps working."""

import asyncio
import base64
import json
import time

from websockets.asyncio.server import serve

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.sequencing import AggTradeSequence, Gap
from harvest_pipeline.collector.service import CollectorService
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import MAX_BAD_FRAME_BYTES, encode_control
from tests.collector.harness import FAST_SETTINGS, records_of
from tests.collector.sealed import load_sealed_records
from tests.collector.test_framing import frame

STREAM = "btcusdt@aggTrade"
MAX_FRAME = 4 * 1024 * 1024
HUGE = 10 * 1024 * 1024
DIGITS_5000 = b"9" * 5000
INVALID_UTF8 = b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"\xff\xfe"}}'
INVALID_AT = INVALID_UTF8.index(0xFF)
NOT_JSON = b"this is not json"
BINARY = b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","a":99}}'
UNSUBSCRIBED = b'{"stream":"xrpusdt@aggTrade","data":{"e":"aggTrade","a":5,"p":"1","q":"1"}}'


def agg(agg_id: int | bytes, extra: bytes = b"") -> bytes:
    value = agg_id if isinstance(agg_id, bytes) else b"%d" % agg_id
    return b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"a":%b%b,"p":"1","q":"1"}}' % (value, extra)


HUGE_TIMES = agg(7, b',"T":1000000000000000000000000000000').replace(b'"E":1', b'"E":18446744073709551616')
ONE_READ = [
    (frame(0x81, agg(1)), ("frame", 1)),
    (frame(0x81, agg(2)), ("frame", 2)),
    (frame(0x81, agg(2**64)), ("bad_frame", "aggTrade id a=18446744073709551616 outside 0..2^63-1")),
    (frame(0x81, agg(3)), ("frame", 3)),
    (frame(0x81, agg(2**63)), ("bad_frame", "aggTrade id a=9223372036854775808 outside 0..2^63-1")),
    (frame(0x81, agg(4)), ("frame", 4)),
    (frame(0x81, agg(DIGITS_5000)), ("bad_frame", f"aggTrade id a={'9' * 40}... (5000 chars) outside 0..2^63-1")),
    (frame(0x81, agg(5)), ("frame", 5)),
    (
        frame(0x81, agg(10**18)),
        ("bad_frame", "aggTrade id a=1000000000000000000 is more than 2^40 ahead of the last accepted id 5"),
    ),
    (frame(0x81, agg(6)), ("frame", 6)),
    (frame(0x81, HUGE_TIMES), ("frame", 7)),
    (frame(0x81, INVALID_UTF8), ("bad_frame", f"invalid UTF-8 at byte {INVALID_AT}")),
    (frame(0x81, agg(8)), ("frame", 8)),
    (frame(0x82, BINARY), ("bad_frame", "binary websocket frame")),
    (frame(0x81, agg(9)), ("frame", 9)),
    (frame(0x81, NOT_JSON), ("bad_frame", "frame is not a JSON object")),
    (frame(0x81, UNSUBSCRIBED), ("bad_frame", "stream 'xrpusdt@aggTrade' is not subscribed by this collector")),
    (frame(0x81, b'{"data":{"a":1}}'), ("bad_frame", "frame names no stream")),
    (frame(0x81, agg(10)), ("frame", 10)),
]
HUGE_PREFIX = b'{"stream":"btcusdt@aggTrade","data":"'
HUGE_PAYLOAD = HUGE_PREFIX + b"z" * (HUGE - len(HUGE_PREFIX) - 2) + b'"}'
AFTER_HUGE = [
    (frame(0x81, HUGE_PAYLOAD), ("bad_frame", f"frame of {HUGE} bytes exceeds max_frame_bytes {MAX_FRAME}")),
    (frame(0x81, agg(11)), ("frame", 11)),
    (frame(0x81, agg(20)), ("frame", 20)),
    (frame(0x81, agg(21)), ("frame", 21)),
]


def exchange_writing(*reads: list[tuple[bytes, tuple[str, object]]]):
    """A server that answers the SUBSCRIBE, then writes each group of frames with one write (one TCP read)."""

    async def handler(websocket):
        await websocket.recv()
        await websocket.send('{"result":null,"id":1}')
        for frames in reads:
            await asyncio.sleep(0.1)
            websocket.transport.write(b"".join(data for data, _ in frames))
        await websocket.wait_closed()

    return handler


class FaultyAggTradeSequence(AggTradeSequence):
    """A tracker with a bug: it raises on frames that carry a marker (fault injection, like ``faulty_fs.py``)."""

    def observe(self, raw: bytes) -> Gap | str | None:
        if b'"boom"' in raw:
            raise RuntimeError("injected tracker fault")
        return super().observe(raw)


def collect(
    tmp_path,
    handler,
    last_id: int,
    tracker: type[AggTradeSequence] = AggTradeSequence,
    max_frame_bytes: int = MAX_FRAME,
):
    """Run a collector of btcusdt@aggTrade against the server ``handler`` until its tracker reached ``last_id``
    (at most 10 s); returns the sealed records."""

    async def main():
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            config = CollectorConfig(
                ws_base=f"ws://127.0.0.1:{port}",
                rest_base="http://127.0.0.1:9",
                stream_kinds=("aggTrade",),
                max_frame_bytes=max_frame_bytes,
                **FAST_SETTINGS,
            )
            service = CollectorService(config, DataPaths.from_root(tmp_path))
            entry = service.intake.entries[STREAM.encode()]
            sequence = tracker(STREAM)
            service.intake.entries[STREAM.encode()] = entry._replace(sequence=sequence)
            stop = asyncio.Event()
            task = asyncio.create_task(service.run(stop))
            deadline = time.monotonic() + 10
            while sequence.last_id != last_id and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # anything still in flight (messages websockets assembles) is recorded too
            stop.set()
            assert await task == 0

    asyncio.run(main())
    return load_sealed_records(tmp_path / "segments" / "sealed")


def outcomes(records) -> list[tuple[str, object]]:
    """What became of each frame, in order: ``("frame", a)`` or ``("bad_frame", reason)``."""
    stored = [r for r in records if r["k"] in ("frame", "bad_frame")]
    return [("frame", r["f"]["data"]["a"]) if r["k"] == "frame" else ("bad_frame", r["reason"]) for r in stored]


def assert_one_connection_numbered_without_holes(records) -> None:
    assert len(records_of(records, "connect")) == 1, "no reconnect"
    assert [r["reason"] for r in records_of(records, "disconnect")] == ["shutdown"]
    connection = records_of(records, "connect")[0]["c"]
    numbers = [r["n"] for r in records if r["c"] == connection]
    assert numbers == list(range(1, len(numbers) + 1)), "sequence numbers 1, 2, 3, ... without holes"


def test_hostile_frames_cost_nothing_but_themselves(tmp_path):
    records = collect(tmp_path, exchange_writing(ONE_READ, AFTER_HUGE), last_id=21)
    assert outcomes(records) == [outcome for _, outcome in ONE_READ + AFTER_HUGE]
    one_read = [r for r in records if r["k"] in ("frame", "bad_frame")][: len(ONE_READ)]
    assert len({r["t"] for r in one_read}) == 1, "the first group arrived in one TCP read (one receive time)"

    sent = {reason: data for data, (kind, reason) in ONE_READ + AFTER_HUGE if kind == "bad_frame"}
    for record in records_of(records, "bad_frame"):
        payload = _payload(sent[record["reason"]])
        assert record["raw_len"] == len(payload)
        assert base64.b64decode(record["raw_b64"]) == payload[:MAX_BAD_FRAME_BYTES]
    streams = {r["reason"]: r["s"] for r in records_of(records, "bad_frame")}
    assert streams["frame is not a JSON object"] == "unknown" and streams["binary websocket frame"] == STREAM

    gaps = records_of(records, "gap")
    assert [(g["reason"], g["expected"], g["got"], g["missing"]) for g in gaps] == [("aggTrade id jump", 12, 20, 8)]
    assert_one_connection_numbered_without_holes(records)


def test_a_frame_the_collector_fails_on_becomes_a_bad_frame_and_its_neighbours_are_stored(tmp_path):
    read = [
        (frame(0x81, agg(1)), ("frame", 1)),
        (
            frame(0x81, agg(2, b',"x":"boom"')),
            ("bad_frame", "collector could not process frame: RuntimeError: injected tracker fault"),
        ),
        (frame(0x81, agg(2)), ("frame", 2)),
        (frame(0x81, agg(5)), ("frame", 5)),
    ]
    records = collect(tmp_path, exchange_writing(read), last_id=5, tracker=FaultyAggTradeSequence)
    assert outcomes(records) == [outcome for _, outcome in read]
    bad = records_of(records, "bad_frame")[0]
    assert base64.b64decode(bad["raw_b64"]) == _payload(read[1][0]) and bad["s"] == STREAM
    gaps = records_of(records, "gap")
    assert [(g["expected"], g["got"]) for g in gaps] == [(3, 5)]
    assert_one_connection_numbered_without_holes(records)


def _payload(data: bytes) -> bytes:
    header = 2 if data[1] < 126 else 4 if data[1] == 126 else 10
    return data[header:]


async def fragmented_exchange(websocket):
    await websocket.recv()
    await websocket.send('{"result":null,"id":1}')
    await websocket.send([agg(1)[:30], agg(1)[30:]])  # bytes fragments: a fragmented binary message
    await websocket.send([agg(2)[:30].decode(), agg(2)[30:].decode()])  # a fragmented text message
    await websocket.send(agg(3), text=True)
    await websocket.wait_closed()


def test_fragmented_messages_are_assembled_by_websockets_and_binary_ones_set_aside(tmp_path):
    records = collect(tmp_path, fragmented_exchange, last_id=3)
    # websockets delivers assembled messages through recv(), so they may be recorded after plain frames sent later
    assert sorted(outcomes(records)) == [("bad_frame", "binary websocket frame"), ("frame", 2), ("frame", 3)]
    assert base64.b64decode(records_of(records, "bad_frame")[0]["raw_b64"]) == agg(1)
    assert_one_connection_numbered_without_holes(records)


def test_control_records_encode_values_orjson_refuses_as_one_json_line():
    for value, stored in ((2**64, 2**64), (10**5000, "<integer of 16610 bits>"), ("\ud800x", "?x")):
        line = encode_control(1, "c-1", 7, "gap", STREAM, got=value).data
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert json.loads(line)["got"] == stored

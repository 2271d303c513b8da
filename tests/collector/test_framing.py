import asyncio
import struct

from harvest_pipeline.collector.framing import BINARY_FRAME_REASON, LongFrame, LongFrameStart, SetAside, split_frames
from tests.collector.harness import collect_in_process, records_of


def frame(first: int, payload: bytes, mask: bool = False) -> bytes:
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    return header + (b"\0\0\0\0" if mask else b"") + payload


SMALL, MEDIUM, LARGE = b'{"a":1}', b"m" * 300, b"L" * 70_000
PING, CLOSE = frame(0x89, b"hi"), frame(0x88, b"\x03\xe8")
FRAGMENTS = frame(0x01, b"part1") + frame(0x80, b"part2")
STREAM = frame(0x81, SMALL) + PING + frame(0x82, MEDIUM) + FRAGMENTS + frame(0x81, LARGE) + CLOSE


def test_plain_data_frames_are_split_out_and_everything_else_is_kept_whole_in_order():
    split = split_frames(STREAM, 1 << 20, False)
    assert split.payloads == [SMALL, MEDIUM, LARGE]
    assert split.others == PING + FRAGMENTS + CLOSE
    assert split.consumed == len(STREAM) and not split.oversized and not split.in_fragmented_message
    assert split.long_frame is None


def test_text_payloads_are_plain_bytes_and_binary_ones_are_set_aside_with_their_reason():
    split = split_frames(STREAM, 1 << 20, False)
    assert [payload.__class__ for payload in split.payloads] == [bytes, SetAside, bytes]
    binary = split.payloads[1]
    assert isinstance(binary, SetAside)
    assert (binary.reason, binary.length) == (BINARY_FRAME_REASON, len(MEDIUM))


def test_any_chunking_of_the_byte_stream_gives_the_same_frames():
    for chunk in (1, 3, 7, 1000):
        payloads, others, buffer, fragmented = [], b"", b"", False
        for at in range(0, len(STREAM), chunk):
            buffer += STREAM[at : at + chunk]
            split = split_frames(buffer, 1 << 20, fragmented)
            payloads += split.payloads
            others += split.others
            buffer, fragmented = buffer[split.consumed :], split.in_fragmented_message
        assert (payloads, others, buffer) == ([SMALL, MEDIUM, LARGE], PING + FRAGMENTS + CLOSE, b""), chunk


def test_masked_frames_go_to_websockets():
    masked = frame(0x81, SMALL, mask=True)
    assert split_frames(masked, 1 << 20, False).others == masked


def test_an_oversized_plain_frame_stops_the_split_after_its_header_and_is_not_for_websockets():
    split = split_frames(frame(0x81, SMALL) + frame(0x81, LARGE) + frame(0x81, SMALL), 1000, False)
    assert split.payloads == [SMALL] and not split.oversized
    assert split.long_frame == LongFrameStart(len(LARGE), binary=False)
    assert split.consumed == len(frame(0x81, SMALL)) + 10, "the header of LARGE (64-bit length) is consumed"


def test_oversized_masked_or_fragmented_frames_are_left_to_websockets():
    for first, mask in ((0x81, True), (0x01, False)):
        split = split_frames(frame(0x81, SMALL) + frame(first, LARGE, mask=mask), 1000, False)
        assert split.payloads == [SMALL] and split.oversized and split.long_frame is None
        assert split.consumed == len(frame(0x81, SMALL))


def test_a_long_frame_keeps_only_its_start_however_it_is_chunked():
    payload = bytes(range(256)) * 400  # 102,400 bytes
    for chunk in (1000, 4096, len(payload) + 10):
        long_frame = LongFrame(LongFrameStart(len(payload), binary=False), 50_000, keep=65_536)
        stream, taken = payload + b"NEXT", 0
        while long_frame.remaining:
            taken += long_frame.feed(stream[taken : taken + chunk])
        assert stream[taken:] == b"NEXT", chunk
        kept = long_frame.payload()
        assert bytes(kept) == payload[:65_536] and kept.length == len(payload)
        assert kept.reason == "frame of 102400 bytes exceeds max_frame_bytes 50000"


def test_server_pings_are_answered_so_the_connection_survives_them(tmp_path):
    async def scenario(sim, service):
        await asyncio.sleep(3.0)

    records, _ = collect_in_process(
        tmp_path, scenario, simulator_settings={"ping_interval_s": 0.2, "ping_timeout_s": 0.6}
    )
    connected = {r["c"] for r in records_of(records, "connect")}
    assert len(connected) == 2, "no reconnects: both connections lived through ~15 pings each"
    ends = [r["reason"] for r in records_of(records, "disconnect") if r["c"] in connected]
    assert ends == ["closed by server: code 1000 server shutdown"] * 2

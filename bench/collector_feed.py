"""A raw-socket websocket feed for collector benchmarks: pre-framed Binance-shaped frames written straight to TCP.

The feed runs in its own process and costs almost no CPU per frame (the frames are framed once, up front), so the
client under test — the collector, or the bare ``websockets`` baseline — is what limits throughput.
"""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
import socket
import struct
import time
from collections.abc import Iterator

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")


def binance_frames(count: int) -> list[bytes]:
    """``count`` combined-stream frames: 50 % aggTrade, 40 % bookTicker, 10 % depth diffs, ids consistent per symbol."""
    agg_ids = dict.fromkeys(SYMBOLS, 1_000_000)
    update_ids = dict.fromkeys(SYMBOLS, 5_000_000)
    levels = ",".join(f'["{97000 + i}.10","{i % 7}.125"]' for i in range(12))
    frames = []
    for n in range(count):
        symbol = SYMBOLS[n % len(SYMBOLS)]
        lower = symbol.lower()
        event_ms = 1_780_000_000_000 + n
        kind = n % 10
        if kind < 5:
            agg_ids[symbol] += 1
            frame = (
                f'{{"stream":"{lower}@aggTrade","data":{{"e":"aggTrade","E":{event_ms},"a":{agg_ids[symbol]},'
                f'"s":"{symbol}","p":"97123.40","q":"0.012","f":{n},"l":{n},"T":{event_ms},"m":true}}}}'
            )
        elif kind < 9:
            frame = (
                f'{{"stream":"{lower}@bookTicker","data":{{"e":"bookTicker","u":{n},"s":"{symbol}",'
                f'"b":"97123.40","B":"1.5","a":"97123.50","A":"0.7","T":{event_ms},"E":{event_ms}}}}}'
            )
        else:
            previous = update_ids[symbol]
            update_ids[symbol] += 3
            frame = (
                f'{{"stream":"{lower}@depth@100ms","data":{{"e":"depthUpdate","E":{event_ms},"T":{event_ms},'
                f'"s":"{symbol}","U":{previous + 1},"u":{update_ids[symbol]},"pu":{previous},'
                f'"b":[{levels}],"a":[{levels}]}}}}'
            )
        frames.append(frame.encode())
    return frames


def ws_frame(payload: bytes) -> bytes:
    """An unmasked server-to-client text frame."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


def _handshake(conn: socket.socket) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("client went away during the handshake")
        request += chunk
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key")
    )
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    conn.recv(65536)  # the SUBSCRIBE message
    conn.sendall(ws_frame(b'{"result":null,"id":1}'))


def _chunks(blob_frames: list[bytes], rate: float | None, repeat: bool) -> Iterator[bytes]:
    if rate is None:
        yield b"".join(blob_frames)
        return
    per_tick = max(1, int(rate / 100))
    start, sent, index = time.monotonic(), 0, 0
    while repeat or index < len(blob_frames):
        chunk = [blob_frames[(index + i) % len(blob_frames)] for i in range(per_tick)]
        index += per_tick
        sent += per_tick
        yield b"".join(chunk)
        delay = start + sent / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _serve(listener: socket.socket, frames: list[bytes], rate: float | None, repeat: bool) -> None:
    framed = [ws_frame(frame) for frame in frames]
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                _handshake(conn)
                for chunk in _chunks(framed, rate, repeat):
                    conn.sendall(chunk)
                conn.recv(65536)
                conn.sendall(b"\x88\x02\x03\xe8")
            except (ConnectionError, OSError, StopIteration):
                continue


class Feed:
    """The feed process. ``ws_base`` is what a client connects to (any path is accepted)."""

    def __init__(self, frames: list[bytes], rate: float | None = None, repeat: bool = False):
        listener = socket.create_server(("127.0.0.1", 0))
        self.ws_base = f"ws://127.0.0.1:{listener.getsockname()[1]}"
        self._process = multiprocessing.get_context("fork").Process(
            target=_serve, args=(listener, frames, rate, repeat), daemon=True
        )
        self._process.start()
        listener.close()

    def stop(self) -> None:
        """End the feed process."""
        self._process.kill()
        self._process.join()

"""Fast path for server-to-client websocket frames: complete, unfragmented data frames are split out of the byte
stream here; every other frame (ping, pong, close, fragments, anything unusual) is handed back whole, in order, so
websockets handles it exactly as usual.

Why: a bare ``websockets`` receive loop spends most of its time per frame in its generic parser and per-message
machinery. Splitting plain frames costs a few byte reads, which leaves the collector's own per-frame work within
the budget of a bare receive loop. See RFC 6455 section 5.2 for the header layout.

Text payloads come out as plain ``bytes``. A data frame that must not be stored as a frame comes out as a
``SetAside`` (a ``bytes`` subclass carrying the reason), so the receiver tells the two apart with one class check:
binary frames (Binance sends text only) and plain data frames longer than ``max_size``, of which ``LongFrame`` keeps
only the first bytes while the rest streams past, instead of closing the connection.
"""

from __future__ import annotations

from typing import NamedTuple

_FIN_TEXT = 0x81
_FIN_BINARY = 0x82
_OPCODE_CONTINUATION = 0x0
_MASK_BIT = 0x80
_MAX_LENGTH = 1 << 63
"""RFC 6455: the most significant bit of a 64-bit length must be 0; websockets fails such a frame itself."""

BINARY_FRAME_REASON = "binary websocket frame"


class SetAside(bytes):
    """A data frame's payload (or its first bytes) that must become a ``bad_frame`` record, not a ``frame``."""

    reason: str
    """Why, for the record."""
    length: int
    """The payload length the frame declared (more than ``len(self)`` when only its start was kept)."""


def set_aside(content: bytes, reason: str, length: int) -> SetAside:
    """Mark ``content`` (a payload or its first bytes, of ``length`` declared bytes) as a frame to set aside."""
    payload = SetAside(content)
    payload.reason = reason
    payload.length = length
    return payload


class LongFrameStart(NamedTuple):
    """The header of a plain data frame longer than ``max_size``; its payload starts at ``Split.consumed``."""

    length: int
    binary: bool


class Split(NamedTuple):
    """What ``split_frames`` found in a buffer."""

    payloads: list[bytes]
    """Payloads of complete unfragmented data frames, in order (binary ones as ``SetAside``)."""
    others: bytes
    """Every other complete frame, byte for byte, in order (for websockets)."""
    consumed: int
    """Bytes of the buffer that were complete frames (and the header of ``long_frame``); the rest is to keep."""
    in_fragmented_message: bool
    """Whether a fragmented message is still open at the end (its frames all go to websockets)."""
    oversized: bool
    """A frame websockets must handle (masked, or part of a fragmented message) declares more than ``max_size``
    bytes: stop splitting and give websockets the rest to reject."""
    long_frame: LongFrameStart | None
    """A plain data frame declares more than ``max_size`` bytes: splitting stopped after its header."""


def split_frames(buffer: bytes, max_size: int, in_fragmented_message: bool) -> Split:
    """Split ``buffer`` (starting at a frame boundary) into data payloads and other frames."""
    payloads: list[bytes] = []
    others: list[bytes] = []
    pos, size = 0, len(buffer)
    while size - pos >= 2:
        first, second = buffer[pos], buffer[pos + 1]
        length, header = second & 0x7F, 2
        if length == 126:
            if size - pos < 4:
                break
            length, header = int.from_bytes(buffer[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            if size - pos < 10:
                break
            length, header = int.from_bytes(buffer[pos + 2 : pos + 10], "big"), 10
        if second & _MASK_BIT:
            header += 4
        if length > max_size:
            plain = not second & _MASK_BIT and not in_fragmented_message
            if plain and first in (_FIN_TEXT, _FIN_BINARY) and length < _MAX_LENGTH:
                start = LongFrameStart(length, first == _FIN_BINARY)
                return Split(payloads, b"".join(others), pos + header, False, False, start)
            return Split(payloads, b"".join(others), pos, in_fragmented_message, True, None)
        end = pos + header + length
        if end > size:
            break
        if first == _FIN_TEXT and not in_fragmented_message and not second & _MASK_BIT:
            payloads.append(buffer[pos + header : end])
        elif first == _FIN_BINARY and not in_fragmented_message and not second & _MASK_BIT:
            payloads.append(set_aside(buffer[pos + header : end], BINARY_FRAME_REASON, length))
        else:
            others.append(buffer[pos:end])
            opcode = first & 0x0F
            if opcode in (1, 2, _OPCODE_CONTINUATION):
                in_fragmented_message = not first & 0x80
        pos = end
    return Split(payloads, b"".join(others), pos, in_fragmented_message, False, None)


class LongFrame:
    """The payload of one plain data frame longer than ``max_size``, as it streams in over any number of reads:
    the first ``keep`` bytes are kept, the rest is counted and dropped, so memory stays bounded by ``keep``."""

    def __init__(self, start: LongFrameStart, max_size: int, keep: int):
        kind = "binary websocket frame" if start.binary else "frame"
        self.reason = f"{kind} of {start.length} bytes exceeds max_frame_bytes {max_size}"
        self.length = start.length
        self.remaining = start.length
        self._keep = keep
        self._head = bytearray()

    def feed(self, data: bytes) -> int:
        """Take this frame's bytes from the start of ``data``; returns how many were its bytes."""
        taken = min(self.remaining, len(data))
        room = self._keep - len(self._head)
        if room > 0:
            self._head += data[: min(room, taken)]
        self.remaining -= taken
        return taken

    def payload(self) -> SetAside:
        """The kept start of the frame, once ``remaining`` is 0."""
        return set_aside(bytes(self._head), self.reason, self.length)

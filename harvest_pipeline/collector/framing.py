"""Fast path for server-to-client websocket frames: complete, unfragmented data frames are split out of the byte
stream here; every other frame (ping, pong, close, fragments, anything unusual) is handed back whole, in order, so
websockets handles it exactly as usual.

Why: a bare ``websockets`` receive loop spends most of its time per frame in its generic parser and per-message
machinery. Splitting plain frames costs a few byte reads, which leaves the collector's own per-frame work within
the budget of a bare receive loop. See RFC 6455 section 5.2 for the header layout.
"""

from __future__ import annotations

from typing import NamedTuple

_FIN_TEXT = 0x81
_FIN_BINARY = 0x82
_PLAIN_DATA = (_FIN_TEXT, _FIN_BINARY)
_OPCODE_CONTINUATION = 0x0
_MASK_BIT = 0x80


class Split(NamedTuple):
    """What ``split_frames`` found in a buffer."""

    payloads: list[bytes]
    """Payloads of complete unfragmented data frames, in order."""
    others: bytes
    """Every other complete frame, byte for byte, in order (for websockets)."""
    consumed: int
    """Bytes of the buffer that were complete frames; the rest is an incomplete frame to keep."""
    in_fragmented_message: bool
    """Whether a fragmented message is still open at the end (its frames all go to websockets)."""
    oversized: bool
    """A frame declares more than ``max_size`` bytes: stop splitting and give websockets the rest to reject."""


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
            return Split(payloads, b"".join(others), pos, in_fragmented_message, True)
        end = pos + header + length
        if end > size:
            break
        if first in _PLAIN_DATA and not in_fragmented_message and not second & _MASK_BIT:
            payloads.append(buffer[pos + header : end])
        else:
            others.append(buffer[pos:end])
            opcode = first & 0x0F
            if opcode in (1, 2, _OPCODE_CONTINUATION):
                in_fragmented_message = not first & 0x80
        pos = end
    return Split(payloads, b"".join(others), pos, in_fragmented_message, False)

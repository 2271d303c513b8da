"""A small file with disk space reserved at start-up, holding the losses the writer could not write into a segment.

Why: a ``write_loss`` record is itself a write. If the disk is still failing when the collector exits (or is killed),
the next start must still learn what was lost. The journal lives beside the open segments, its space is allocated
when the collector starts (``reserve``), and later updates overwrite that space in place, so they need no new blocks
even on a full disk. Two slots are written alternately, each with a sequence number, length and CRC, so a write torn
by a crash leaves the previous state readable. An empty journal means "nothing unwritten".
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import orjson

from harvest_pipeline.collector.buffer import LossKey, StreamLoss
from harvest_pipeline.segments import FileSystem

log = logging.getLogger(__name__)

SLOT_BYTES = 64 * 1024
_HEADER = b"HLJ1 %020d %08d %08x\n"
_HEADER_LEN = len(_HEADER % (0, 0, 0))
MANY_STREAMS = "<several streams>"
MANY_REASONS = "several reasons"


def encode_losses(losses: dict[LossKey, StreamLoss], limit: int) -> bytes:
    """The JSON payload for ``losses``; what does not fit in ``limit`` bytes is merged, first per reason, then into one
    entry, so the counts always survive even when the stream names cannot."""
    payload = _payload(losses)
    for merge_key in (lambda key: (MANY_STREAMS, key[1][:200]), lambda key: (MANY_STREAMS, MANY_REASONS)):
        if len(payload) <= limit:
            break
        merged: dict[LossKey, StreamLoss] = {}
        for key, loss in losses.items():
            if merge_key(key) in merged:
                merged[merge_key(key)].merge(loss)
            else:
                merged[merge_key(key)] = loss.copy()
        for loss in merged.values():  # trade ids of different symbols do not make one range
            loss.first_id = loss.last_id = None
        payload = _payload(merged)
    return payload


def _payload(losses: dict[LossKey, StreamLoss]) -> bytes:
    return orjson.dumps([{"stream": s, "reason": r, **vars(loss)} for (s, r), loss in sorted(losses.items())])


def decode_losses(payload: bytes) -> dict[LossKey, StreamLoss]:
    """The losses of a journal payload."""
    losses: dict[LossKey, StreamLoss] = {}
    for entry in orjson.loads(payload):
        loss = StreamLoss(entry["lines"], entry["bytes"], entry["first_recv_ns"], entry["last_recv_ns"])
        loss.add_ids(entry.get("first_id"), entry.get("last_id"))
        losses[(entry["stream"], entry["reason"])] = loss
    return losses


class LossJournal:
    """The loss journal of one collector id (``open/<collector_id>/loss-journal``)."""

    def __init__(self, path: Path, fs: FileSystem):
        self.path = path
        self._fs = fs
        self._fd: int | None = None
        self._seq = 0
        self._empty = True

    @property
    def reserved(self) -> bool:
        """Whether the journal's space is allocated and it can be written."""
        return self._fd is not None

    @property
    def empty(self) -> bool:
        """Whether the journal holds no losses (as far as this process knows)."""
        return self._empty

    def read(self) -> dict[LossKey, StreamLoss]:
        """The losses of the newest intact slot ({} when there is no journal or nothing in it)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        best: tuple[int, bytes] | None = None
        for start in (0, SLOT_BYTES):
            slot = data[start : start + SLOT_BYTES]
            parsed = _parse_slot(slot)
            if parsed is not None and (best is None or parsed[0] > best[0]):
                best = parsed
        if best is None:
            return {}
        self._seq = best[0]
        losses = decode_losses(best[1])
        self._empty = not losses
        return losses

    def reserve(self) -> None:
        """Open the journal and allocate its space (raises ``OSError`` on a failing disk; call again to retry)."""
        if self._fd is not None:
            return
        fd = self._fs.open_for_write(self.path)
        try:
            self._fs.allocate(fd, 2 * SLOT_BYTES)
        except OSError:
            self._fs.close(fd)
            raise
        self._fd = fd

    def write(self, losses: dict[LossKey, StreamLoss]) -> None:
        """Replace the journal's content with ``losses``, durably (raises ``OSError``; the old state stays intact)."""
        if self._fd is None:
            raise OSError(f"loss journal {self.path} has no reserved space")
        payload = encode_losses(losses, SLOT_BYTES - _HEADER_LEN)
        seq = self._seq + 1
        record = _HEADER % (seq, len(payload), zlib.crc32(payload)) + payload
        offset = (seq % 2) * SLOT_BYTES
        written = 0
        while written < len(record):
            written += self._fs.pwrite(self._fd, record[written:], offset + written)
        self._fs.fsync(self._fd)
        self._seq = seq
        self._empty = not losses

    def close(self) -> None:
        """Close the journal file."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._fs.close(fd)


def _parse_slot(slot: bytes) -> tuple[int, bytes] | None:
    if len(slot) < _HEADER_LEN or not slot.startswith(b"HLJ1 "):
        return None
    try:
        _, seq, length, crc = slot[:_HEADER_LEN].split()
        seq_no, size, checksum = int(seq), int(length), int(crc, 16)
    except ValueError:
        return None
    payload = slot[_HEADER_LEN : _HEADER_LEN + size]
    if len(payload) != size or zlib.crc32(payload) != checksum:
        return None
    return seq_no, payload

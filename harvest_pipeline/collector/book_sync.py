"""Whether each symbol's recorded depth stream can rebuild an order book: judged on what was written, not received.

A recording can rebuild a book from a snapshot plus every diff after it. So a symbol is *unsynced* from its first
diff, after a ``pu`` break, and after any of its diffs or snapshots was lost (refused by the full queue or never
written); it is *synced* again once a snapshot received after that moment is in a segment. After a loss, the
snapshot is requested only when the ``write_loss`` record is written, i.e. once writing works again, so the new
snapshot is not lost to the same failure.

The rule is the same on every market, because it is judged by receive time, not by ids: a snapshot received after the
break, with every diff recorded since the break, holds the diff the book restarts from, whichever way the market
chains them. A break is what the market's tracker reports (``sequencing``: ``pu`` on the futures, ``U`` on spot).
The ids are fitted where the book is rebuilt (``harvest_pipeline.book``). Binance's rules: the futures drop diffs with
``u`` < ``lastUpdateId`` and start from the one with ``U`` <= ``lastUpdateId`` <= ``u``; spot drops ``u`` <=
``lastUpdateId`` and starts from the one with ``U`` <= ``lastUpdateId`` + 1 <= ``u``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from harvest_pipeline.segments import Line

SNAPSHOT_STREAM_SUFFIX = "@depthSnapshot"


def book_symbol(stream: str, depth_kinds: Iterable[str]) -> str | None:
    """The symbol whose book ``stream`` feeds (diff-depth or snapshot stream), else None."""
    symbol, _, kind = stream.partition("@")
    if kind == SNAPSHOT_STREAM_SUFFIX[1:] or kind in depth_kinds:
        return symbol.upper()
    return None


class BookSync:
    """Per-symbol sync state, shared by the readers (asyncio thread) and the writer thread."""

    def __init__(self, depth_streams: Iterable[str]):
        self._lock = threading.Lock()
        self._unsynced_since: dict[str, int] = {}
        self._depth_kinds: set[str] = set()
        self.symbols: set[str] = set()
        self.add_streams(depth_streams)

    def add_streams(self, depth_streams: Iterable[str]) -> None:
        """Follow the books of more diff-depth streams (symbols that started being recorded)."""
        for stream in depth_streams:
            symbol, _, kind = stream.partition("@")
            self._depth_kinds.add(kind)
            self.symbols.add(symbol.upper())

    def remove_symbols(self, symbols: Iterable[str]) -> None:
        """Stop following the books of symbols no longer recorded (they are no longer reported unsynced)."""
        with self._lock:
            for symbol in symbols:
                self.symbols.discard(symbol)
                self._unsynced_since.pop(symbol, None)

    def symbol_of(self, stream: str) -> str | None:
        """The symbol whose book ``stream`` feeds, if it is a depth or snapshot stream of this collector."""
        symbol = book_symbol(stream, self._depth_kinds)
        return symbol if symbol in self.symbols else None

    def mark_unsynced(self, symbol: str, since_ns: int) -> None:
        """``symbol``'s recording needs a snapshot received at or after ``since_ns``."""
        with self._lock:
            if symbol in self.symbols:  # a loss reported after its symbol was removed marks nothing
                self._unsynced_since[symbol] = max(since_ns, self._unsynced_since.get(symbol, since_ns))

    def snapshots_written(self, lines: list[Line]) -> None:
        """Snapshot records reached a segment: each syncs its symbol if it was received after the last break."""
        with self._lock:
            for line in lines:
                symbol = self.symbol_of(line.stream or "")
                since = self._unsynced_since.get(symbol or "")
                if since is not None and line.recv_ns >= since:
                    del self._unsynced_since[symbol]  # type: ignore[arg-type]

    def unsynced(self) -> dict[str, int]:
        """Symbols without a valid snapshot since their last break, with the receive time of that break."""
        with self._lock:
            return dict(self._unsynced_since)

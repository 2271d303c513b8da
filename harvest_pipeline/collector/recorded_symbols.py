"""The symbols a collector records now, and how a change of them reaches every part that works per symbol.

A change (the selectors resolved to other symbols: a listing, a delisting, a new top N) goes, in this order:

1. logged (one line: added, removed, how many now) and counted;
2. added symbols: their streams tracked by the intake (id trackers, /healthz, metrics, watchdog), their books
   followed, then every follower told (depth snapshots, open-interest polls, trade backfill);
3. removed symbols: their streams leave /healthz, the metrics and the watchdog at once (a stream about to be closed is
   never reported silent), their books and followers forget them;
4. the connections change (``ShardSet.change``): new shards for new streams, shards that lose streams handed over
   with overlap, shards left empty closed. Each new connection's ``connect`` record lists its streams, each old
   one's ``disconnect`` record says why it ended: the segments tell what changed without a record kind of its own;
5. once the connections that carried them are closed, the removed streams are forgotten (a late frame naming one is
   a ``bad_frame``).

The first symbols of a collector whose selectors were not resolved at start are the one exception to "nothing
else": their down time since the previous run is declared then (``CollectorService``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from harvest_pipeline.collector.book_sync import BookSync
from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.intake import Intake
from harvest_pipeline.collector.metrics import CollectorMetrics
from harvest_pipeline.collector.sequencing import DepthSequence, sequence_for
from harvest_pipeline.collector.shard_set import ShardSet

log = logging.getLogger(__name__)

SymbolsHook = Callable[[list[str]], None]


def depth_streams(by_route: Mapping[str, Sequence[str]]) -> list[str]:
    """The diff-depth streams (those an order book is rebuilt from) among ``by_route``'s."""
    return [name for names in by_route.values() for name in names if isinstance(sequence_for(name), DepthSequence)]


class RecordedSymbols:
    """The symbols recorded now; ``change`` moves every part of the collector to others."""

    def __init__(
        self,
        symbols: tuple[str, ...],
        config: CollectorConfig,
        intake: Intake,
        book: BookSync,
        shard_set: ShardSet,
        metrics: CollectorMetrics,
    ):
        self.symbols = symbols
        self.on_added: list[SymbolsHook] = []
        """Told the symbols that start being recorded, before their connections open."""
        self.on_removed: list[SymbolsHook] = []
        """Told the symbols that stop being recorded, before their connections close."""
        self._config = config
        self._intake = intake
        self._book = book
        self._shard_set = shard_set
        self._metrics = metrics
        metrics.symbols_recorded.set(len(symbols))

    async def change(self, symbols: tuple[str, ...]) -> None:
        """Record ``symbols`` from now on (nothing happens if they are the ones recorded)."""
        added = [symbol for symbol in symbols if symbol not in self.symbols]
        removed = [symbol for symbol in self.symbols if symbol not in symbols]
        if not added and not removed:
            return
        note = " ".join([*(f"+{symbol}" for symbol in added), *(f"-{symbol}" for symbol in removed)])
        log.info(
            "recorded symbols change: added %s; removed %s; %d symbols now",
            ",".join(added) or "none",
            ",".join(removed) or "none",
            len(symbols),
        )
        self._metrics.symbol_changes.labels("added").inc(len(added))
        self._metrics.symbol_changes.labels("removed").inc(len(removed))
        self._metrics.symbols_recorded.set(len(symbols))
        new_streams = self._config.streams_by_route(added)
        self._intake.add_streams(new_streams)
        self._book.add_streams(depth_streams(new_streams))
        for hook in self.on_added:
            hook(added)
        leaving = [name for symbol in removed for name in self._config.streams_of(symbol)]
        self._intake.unwatch_streams(leaving)
        self._book.remove_symbols(removed)
        for hook in self.on_removed:
            hook(removed)
        self.symbols = symbols
        await self._shard_set.change(self._config.streams_by_route(symbols), note)
        self._intake.forget_streams(leaving)

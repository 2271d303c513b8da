"""Every shard of one collector, and the one way their layout changes while running (``layout.plan_layout``).

``change`` moves from the streams carried now to the streams wanted: new shards start, shards that lose streams are
handed over to their successor with overlap (``Shard.hand_over_to``, the 24 h rotation's mechanism), shards left
without streams close, and the others are not touched. Every connection's ``connect`` record so keeps listing
exactly what it subscribed, and its ``disconnect`` record says why it ended (``replaced: symbols changed ...``,
``closed: symbols removed ...``). ``by_stream`` (stream -> the shard whose connection carries it, read by the
watchdog) follows along.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Mapping, Sequence

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.intake import Intake
from harvest_pipeline.collector.layout import ShardLayout, plan_layout
from harvest_pipeline.collector.shard import Shard


class ShardSet:
    """The shards of one collector (all on the asyncio thread)."""

    def __init__(self, intake: Intake, config: CollectorConfig, new_conn_id: Callable[[], str], rng: random.Random):
        self.shards: list[Shard] = []
        self.by_stream: dict[str, Shard] = {}
        self.started = False
        self._intake = intake
        self._config = config
        self._new_conn_id = new_conn_id
        self._rng = rng
        self._numbers = itertools.count()

    def lay_out(self, wanted: Mapping[str, Sequence[str]]) -> None:
        """Plan the shards for ``wanted`` (route -> streams) from scratch; only before ``start``."""
        assert not self.started, "a running collector changes its shards with change()"
        self._numbers = itertools.count()
        self.shards = [self._new_shard(layout) for layout in plan_layout([], wanted, self._size).open]
        self.by_stream = {name: shard for shard in self.shards for name in shard.streams}

    def start(self) -> None:
        """Start every shard, staggered by index."""
        self.started = True
        for shard in self.shards:
            shard.start()

    async def change(self, wanted: Mapping[str, Sequence[str]], note: str) -> None:
        """Carry exactly ``wanted`` (route -> streams): returns once every connection that had to close is closed.
        ``note`` says what changed, for the disconnect records (``+DOGEUSDT -XRPUSDT``)."""
        if not self.started:
            self.lay_out(wanted)
            return
        current = list(self.shards)
        plan = plan_layout([shard.layout for shard in current], wanted, self._size)
        opened = [self._new_shard(layout) for layout in plan.open]
        successors = {index: self._new_shard(layout) for index, layout in plan.replace.items()}
        starting = [*opened, *successors.values()]
        self.shards += starting  # from now on a shutdown stops them too
        for position, shard in enumerate(starting):
            shard.start(position * self._config.connect_stagger_s)
            for name in shard.streams:
                self.by_stream.setdefault(name, shard)  # new streams; streams handed over move once it is done
        await asyncio.gather(
            *(
                current[index].hand_over_to(new, f"replaced: symbols changed ({note})")
                for index, new in successors.items()
            ),
            *(current[index].stop(f"closed: symbols removed ({note})") for index in plan.close),
        )
        for shard in successors.values():
            self.by_stream.update(dict.fromkeys(shard.streams, shard))
        ended = {id(current[index]) for index in [*successors, *plan.close]}
        self.shards = [shard for shard in self.shards if id(shard) not in ended]
        carried = {name for shard in self.shards for name in shard.streams}
        for name in [name for name in self.by_stream if name not in carried]:
            del self.by_stream[name]

    async def stop(self) -> None:
        """Close every connection (shutdown)."""
        await asyncio.gather(*(shard.stop() for shard in self.shards))

    @property
    def _size(self) -> int:
        return self._config.streams_per_connection

    def _new_shard(self, layout: ShardLayout) -> Shard:
        return Shard(
            next(self._numbers),
            layout.route,
            list(layout.streams),
            self._intake,
            self._config,
            self._new_conn_id,
            self._rng,
        )

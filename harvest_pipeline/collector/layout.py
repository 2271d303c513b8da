"""Which streams each connection carries, and how that layout changes when the recorded symbols change.

A connection's stream list is fixed for its life: its ``connect`` record lists its streams, and compaction sets aside
every frame whose stream its connection's ``connect`` record does not list. So a change of symbols never subscribes
or unsubscribes on a live connection. Instead the layout is planned again (``plan_layout``), disturbing as little as
it can:

- a shard whose streams all stay is kept as it is (its connection is not touched);
- a shard that loses streams is replaced by one with the streams it keeps, the way the 24 h rotation replaces a
  connection (the new one opened and given the overlap to deliver before the old one is closed; the overlap's
  duplicates are removed downstream by exchange ids). Streams added in the same change fill the room it has;
- a shard that loses every stream is closed;
- the remaining new streams go to new shards, at most ``size`` each, in order (symbol by symbol).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ShardLayout:
    """One shard of a layout: its route and its streams."""

    route: str
    streams: tuple[str, ...]


@dataclass
class LayoutChange:
    """How to go from the current shards (by index) to the wanted streams."""

    keep: list[int] = field(default_factory=list)
    replace: dict[int, ShardLayout] = field(default_factory=dict)
    """Index of a current shard -> the shard that takes over from it."""
    close: list[int] = field(default_factory=list)
    open: list[ShardLayout] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether any connection has to be opened or closed."""
        return bool(self.replace or self.close or self.open)


def plan_layout(current: Sequence[ShardLayout], wanted: Mapping[str, Sequence[str]], size: int) -> LayoutChange:
    """The change from ``current`` to carrying exactly the ``wanted`` streams (route -> streams, in order), with at
    most ``size`` streams per shard. Streams never move between routes; a stream already carried stays where it is."""
    wanted_sets = {route: set(streams) for route, streams in wanted.items()}
    change = LayoutChange()
    carried: set[str] = set()
    room: dict[str, list[tuple[int, list[str]]]] = {}
    for index, shard in enumerate(current):
        kept = [stream for stream in shard.streams if stream in wanted_sets.get(shard.route, ())]
        carried.update(kept)
        if len(kept) == len(shard.streams):
            change.keep.append(index)
        elif kept:
            room.setdefault(shard.route, []).append((index, kept))
        else:
            change.close.append(index)
    for route, streams in wanted.items():
        new = [stream for stream in streams if stream not in carried]
        for index, kept in room.pop(route, []):
            taken, new = new[: size - len(kept)], new[size - len(kept) :]
            change.replace[index] = ShardLayout(route, tuple(kept + taken))
        for start in range(0, len(new), size):
            change.open.append(ShardLayout(route, tuple(new[start : start + size])))
    return change

"""Depth diffs merged over a longer window: spot's ``<sym>@depth`` stream sends one diff per second.

Pure, no clock: the exchange adds every 100 ms diff and takes the merged one at each second of its clock. The merged
diff spans the first diff's ``U`` to the last one's ``u`` with the latest size of every level it changed, so it
continues the chain exactly as the diffs it is made of did.
"""

from __future__ import annotations

from harvest_pipeline.simulator.market import DepthDiff


class DiffMerger:
    """The depth diffs added since the last ``take``, merged into one."""

    def __init__(self) -> None:
        self._first: DepthDiff | None = None
        self._last_update_id = 0
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}

    def add(self, diff: DepthDiff) -> None:
        """Merge the next diff of the chain."""
        if self._first is None:
            self._first = diff
        self._last_update_id = diff.last_update_id
        self._bids.update(diff.bids)
        self._asks.update(diff.asks)

    def reset(self) -> None:
        """Forget what was merged (a diff was lost, or nobody listens): the next merged diff starts after it."""
        self._first = None
        self._bids, self._asks = {}, {}

    def take(self) -> DepthDiff | None:
        """The merged diff (None when nothing was added) and a fresh start."""
        first = self._first
        if first is None:
            return None
        merged = DepthDiff(
            first.first_update_id,
            self._last_update_id,
            first.previous_update_id,
            sorted(self._bids.items(), reverse=True),
            sorted(self._asks.items()),
        )
        self.reset()
        return merged

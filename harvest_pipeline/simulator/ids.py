"""Where a simulator run starts its exchange ids, so that a later run always continues above an earlier one.

On the exchange, aggregate trade ids (``a``, and the trade ids ``f``/``l``) and order book update ids (depth
``U``/``u``/``pu``, bookTicker ``u``) only ever grow. A simulator that restarted its ids for a seed would resend ids
a collector has already stored, and every downstream deduplication would drop the new data. So the first ids of a
run are a function of the wall clock at its start: ``floor + (start_ms - ID_EPOCH_MS) * per_ms``.

The bound: a run's market clock ticks at most once per 10 ms of its life plus once (a tick never runs ahead of its
schedule; an overloaded clock skips ticks, it never adds any), a tick runs at most ``MAX_EVENTS_PER_TICK`` book
events per symbol, and a book event takes at most 1 update id, 5 aggregate trade ids (a market order consumes at
most the best 5 levels) and 15 trade ids (at most 3 per aggregate trade). Within ``d`` ms of its start a run
therefore issues at most ``(d / 10 + 1) * 2,000 * k = (200 d + 2,000) k`` ids of a kind taking ``k`` per event,
while a run started ``d`` ms later begins ``1,000 k d`` higher: above everything the earlier run can have issued
once ``d`` > 2.5 ms. A restart takes far longer. Not covered: a wall clock set back between the runs, and ids
deliberately skipped with the ``skip_agg_ids`` fault.
"""

from __future__ import annotations

from typing import NamedTuple

ID_EPOCH_MS = 1_767_225_600_000
"""2026-01-01T00:00:00Z: ids count wall-clock milliseconds from here (kept small: ids stay below 2**53 until ~2045)."""
MAX_EVENTS_PER_TICK = 2_000
"""Book events one symbol runs in one 10 ms tick at most (200,000 per second, beyond what one process can generate)."""
UPDATE_IDS_PER_MS = 1_000
AGG_IDS_PER_MS = 5_000
TRADE_IDS_PER_MS = 15_000
"""Id space reserved per wall-clock millisecond: 5x the most a run can issue per millisecond (200 events)."""


class FirstIds(NamedTuple):
    """The ids a market model starts from: its current update id, and the next aggregate trade and trade ids."""

    update_id: int
    agg_id: int
    trade_id: int


def first_ids_at(start_ms: int) -> FirstIds:
    """The first ids of a run started at wall-clock ``start_ms`` (epoch ms); later starts give strictly larger ids."""
    elapsed = max(start_ms - ID_EPOCH_MS, 0)
    return FirstIds(
        update_id=1_000_000_000 + elapsed * UPDATE_IDS_PER_MS,
        agg_id=100_000_000 + elapsed * AGG_IDS_PER_MS,
        trade_id=400_000_000 + elapsed * TRADE_IDS_PER_MS,
    )

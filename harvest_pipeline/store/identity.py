"""The identity of a row per kind: what makes two rows the same row (dedup key)."""

from __future__ import annotations

DEDUP_KEYS: dict[str, tuple[str, ...]] = {
    "prices": ("agg_trade_id",),
    "orderbook": ("final_update_id",),
    "bookticker": ("update_id",),
    "depth_snapshot": ("last_update_id",),
    "events": ("segment", "line"),
}
"""Exchange ids for market data, provenance (segment, line) for ledger records."""

"""Quality figures of one features day (the numbers behind the asset checks) and their reference thresholds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

SECONDS_PER_DAY = 86_400
MAX_EMPTY_MINUTE_RATE = 0.001
MAX_DUPLICATE_RATE = 0.005
MAX_LATENCY_P50_MS = 60.0
MAX_LATENCY_P99_MS = 120.0


def empty_minute_rate(table: pa.Table) -> dict:
    """Share of 1-minute buckets without a trade, over the wholly recorded minutes between the first and last trade.

    Measured over the covered span (not all 1,440 minutes) so a day still being recorded, or a feed started mid-day,
    is judged on the data it has, and minutes a collector was not recording for a moment are left out: a disconnect is
    a feed gap (the ``feed_gaps`` check), not a quiet market. ``covered_minutes`` says how much of the day was judged.
    """
    trades_per_minute = table.column("trade_count").to_numpy().reshape(-1, 60).sum(axis=1)
    recorded_minutes = table.column("recorded").to_numpy(zero_copy_only=False).reshape(-1, 60).all(axis=1)
    active = np.flatnonzero(trades_per_minute)
    if len(active) == 0:
        return {"rate": 1.0, "empty_minutes": 0, "covered_minutes": 0}
    judged = recorded_minutes[active[0] : active[-1] + 1]
    empty = int(np.count_nonzero((trades_per_minute[active[0] : active[-1] + 1] == 0) & judged))
    covered = int(np.count_nonzero(judged))
    return {"rate": empty / covered if covered else 0.0, "empty_minutes": empty, "covered_minutes": covered}

"""Compaction runs over a range of segment partitions: one run compacts many segments (``BackfillPolicy.single_run``).

Dagster 1.13's ``RunRequest`` has no partition range argument; a range is requested with Dagster's two documented
range tags, which ``RunRequest.partition_key_range`` reads back. A range follows the order partitions were
registered in, so a range is only ever built over partitions that are consecutive in that order.
"""

import os

import dagster as dg

from harvest_pipeline.status import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG

BATCH_ENV = "HARVEST_COMPACTION_BATCH"
MAX_SEGMENTS_PER_RUN = int(os.environ.get(BATCH_ENV, "64"))
"""Segments per run when behind; see docs/compaction.md for the measurement behind the default."""


def range_request(first: str, last: str, run_key: str) -> dg.RunRequest:
    """One run over the registered segment partitions ``first`` .. ``last`` (inclusive)."""
    return dg.RunRequest(run_key=run_key, tags={PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last})


def batch_requests(
    names: list[str], batch_size: int = MAX_SEGMENTS_PER_RUN, run_key_prefix: str = ""
) -> list[dg.RunRequest]:
    """One run request per consecutive batch of ``names`` (consecutive in registration order), run key
    ``<prefix><first>..<last>``."""
    requests = []
    for start in range(0, len(names), batch_size):
        batch = names[start : start + batch_size]
        requests.append(range_request(batch[0], batch[-1], f"{run_key_prefix}{batch[0]}..{batch[-1]}"))
    return requests

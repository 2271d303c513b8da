"""A replayed day as the Arrow tables ``book_validity``, ``book_1s`` and ``book_checkpoint`` (``schema.BOOK_*``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from harvest_pipeline.book.decimals import SCALE, decimal_array
from harvest_pipeline.book.record import Recorder, SideLevels
from harvest_pipeline.book.replay import Interval
from harvest_pipeline.schema import BOOK_1S, BOOK_CHECKPOINT, BOOK_VALIDITY, LEVEL, OFI_LEVELS


def validity_table(intervals: list[Interval]) -> pa.Table:
    """One row per valid interval, in time order."""
    rows = [
        {
            "from_time_ms": interval.from_ms,
            "to_time_ms": interval.to_ms,
            "first_update_id": interval.first_update_id,
            "last_update_id": interval.last_update_id,
            "diffs": interval.diffs,
            "start": interval.start,
            "snapshot_update_id": interval.snapshot_update_id,
            "end": interval.end,
            "end_reason": interval.end_reason,
            "break_after_id": interval.break_after_id,
            "break_pu": interval.break_pu,
        }
        for interval in intervals
    ]
    return pa.Table.from_pylist(rows, schema=BOOK_VALIDITY)


def _offsets(levels: SideLevels) -> pa.Array:
    return pa.array(levels.offsets())


def _mask(valid: list[bool]) -> pa.Array:
    return pa.array(np.logical_not(np.asarray(valid, dtype=bool)))


def _decimal_list(offsets: pa.Array, values: np.ndarray, mask: pa.Array, list_type: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(offsets, decimal_array(values), list_type, mask=mask)


def seconds_table(recorder: Recorder) -> pa.Table:
    """The 86,400 rows of ``book_1s``."""
    rows = len(recorder.valid)
    mask = _mask(recorder.valid)
    price_list = BOOK_1S.field("bid_prices").type
    flows = np.asarray(recorder.flows, dtype=np.float64) / SCALE
    flow_offsets = np.zeros(rows + 1, dtype=np.int32)
    flow_offsets[1:] = np.cumsum(np.asarray(recorder.valid, dtype=np.int32) * OFI_LEVELS)
    columns = {
        "time_ms": pa.array(recorder.day_start_ms + 1000 * np.arange(rows, dtype=np.int64)),
        "second_of_day": pa.array(np.arange(rows, dtype=np.int32)),
        "valid": pa.array(recorder.valid, type=pa.bool_()),
        "last_update_id": pa.array(recorder.update_ids, type=pa.int64()),
        "bid_prices": _decimal_list(_offsets(recorder.bids), recorder.bids.prices(), mask, price_list),
        "bid_qtys": _decimal_list(_offsets(recorder.bids), recorder.bids.qtys(), mask, price_list),
        "ask_prices": _decimal_list(_offsets(recorder.asks), recorder.asks.prices(), mask, price_list),
        "ask_qtys": _decimal_list(_offsets(recorder.asks), recorder.asks.qtys(), mask, price_list),
        "diffs": pa.array(recorder.diffs, type=pa.int64()),
        "ofi_levels": pa.ListArray.from_arrays(
            pa.array(flow_offsets), pa.array(flows), BOOK_1S.field("ofi_levels").type, mask=mask
        ),
    }
    return pa.table(columns, schema=BOOK_1S)


def _level_list(levels: SideLevels, mask: pa.Array) -> pa.Array:
    structs = pa.StructArray.from_arrays(
        [decimal_array(levels.prices()), decimal_array(levels.qtys())],
        fields=list(LEVEL),
    )
    return pa.ListArray.from_arrays(_offsets(levels), structs, BOOK_CHECKPOINT.field("bids").type, mask=mask)


def checkpoint_table(recorder: Recorder) -> pa.Table:
    """The 1,440 rows of ``book_checkpoint``."""
    mask = _mask(recorder.checkpoint_valid)
    columns = {
        "time_ms": pa.array(recorder.checkpoint_times, type=pa.int64()),
        "valid": pa.array(recorder.checkpoint_valid, type=pa.bool_()),
        "last_update_id": pa.array(recorder.checkpoint_update_ids, type=pa.int64()),
        "last_event_time_ms": pa.array(recorder.checkpoint_event_ms, type=pa.int64()),
        "bids": _level_list(recorder.checkpoint_bids, mask),
        "asks": _level_list(recorder.checkpoint_asks, mask),
    }
    return pa.table(columns, schema=BOOK_CHECKPOINT)

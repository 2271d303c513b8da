"""Build the ``features_1s`` table of one day x symbol from raw Parquet, and store it next to the raw kinds."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harvest_pipeline.features import math as fm
from harvest_pipeline.features.sources import DaySources, day_start_ms
from harvest_pipeline.features.sql import day_gap_windows, day_latency, load_day, per_second_columns
from harvest_pipeline.schema import FEATURES_1S, OFI_LEVELS
from harvest_pipeline.store import kind_dir

FEATURES_KIND = "features_1s"
FEATURES_FILE = "features.parquet"


@dataclass(frozen=True)
class FeatureParams:
    """Every tunable of the features table, with the reference defaults (docs/features.md)."""

    zscore_window_s: int = 300
    zscore_min_count: int = 60
    sigma_floor: float = 1e-9
    winsor_limit: float = 8.0
    w_ofi: float = 0.6
    w_cvd: float = 0.4
    signal_threshold: float = 1.0
    regime_window_s: int = 300
    active_trades_per_s: float = 2.0
    vol_window_s: int = 300
    book_stale_after_s: float = 5.0
    ofi_level_weights: tuple[float, ...] = (1.0, 1 / 2, 1 / 3, 1 / 4, 1 / 5)
    fee_tier: str = "TM"

    def __post_init__(self) -> None:
        weights = tuple(float(weight) for weight in self.ofi_level_weights)
        if len(weights) != OFI_LEVELS:
            raise ValueError(
                f"ofi_level_weights {list(self.ofi_level_weights)} has {len(weights)} weights: "
                f"expected one per book level of ofi_l5, {OFI_LEVELS}"
            )
        object.__setattr__(self, "ofi_level_weights", weights)  # a tuple whatever sequence was given (Dagster: list)


@dataclass(frozen=True)
class FeatureDay:
    """The features of one day x symbol and the feed gaps that overlap the day."""

    day: dt.date
    symbol: str
    table: pa.Table
    gaps: list[dict]
    latency_ms: dict


def build_features(
    parquet_root: Path, day: dt.date, symbol: str, params: FeatureParams, threads: int | None = None
) -> FeatureDay:
    """Compute the 86,400-row features table of ``symbol`` on UTC ``day`` from whatever raw Parquet is visible now."""
    sources = DaySources.discover(parquet_root, day, symbol)
    con = duckdb.connect(config={"threads": threads} if threads else {})
    try:
        sources.register(con)
        start = day_start_ms(day)
        load_day(con, start)
        columns = per_second_columns(con, start, int(params.book_stale_after_s * 1000), params.ofi_level_weights)
        gaps = day_gap_windows(con, start)
        latency = day_latency(con)
    finally:
        con.close()
    return FeatureDay(day, symbol, add_signals_and_labels(columns, params), gaps, latency)


def add_signals_and_labels(columns: pa.Table, params: FeatureParams) -> pa.Table:
    """Append z-scores, fusion and labels (numpy) to the SQL columns, in the FEATURES_1S order."""

    def floats(name: str) -> np.ndarray:
        return columns.column(name).to_numpy(zero_copy_only=False).astype(np.float64)

    trade_count = columns.column("trade_count").to_numpy()
    book_updates = columns.column("book_updates").to_numpy()
    z_args = (params.zscore_window_s, params.zscore_min_count, params.sigma_floor, params.winsor_limit)
    ofi_z = fm.robust_zscore(floats("ofi"), book_updates > 0, *z_args)
    cvd_z = fm.robust_zscore(floats("delta"), trade_count > 0, *z_args)
    fused = fm.fusion(ofi_z, cvd_z, params.w_ofi, params.w_cvd)
    trade_rate = fm.trades_per_second(trade_count, params.regime_window_s)
    realized_vol = fm.realized_volatility(floats("mid"), params.vol_window_s)
    regime = fm.regime_labels(trade_rate, params.active_trades_per_s)
    vol_bucket = fm.vol_bucket_labels(realized_vol)
    computed = {
        "ofi_z": _nullable_floats(ofi_z),
        "cvd_z": _nullable_floats(cvd_z),
        "fusion": _nullable_floats(fused),
        "fusion_signal": pa.array(fm.fusion_signal(fused, params.signal_threshold), pa.int8(), from_pandas=True),
        "trades_per_s_trailing": pa.array(trade_rate, pa.float64()),
        "realized_vol_trailing": _nullable_floats(realized_vol),
        "session": pa.array(fm.session_labels(columns.column("second_of_day").to_numpy()), pa.string()),
        "regime": pa.array(regime, pa.string()),
        "vol_bucket": pa.array(vol_bucket, pa.string()),
        "scenario_2x2": pa.array(fm.scenario_labels(regime, vol_bucket), pa.string()),
        "fee_tier": pa.array(np.full(columns.num_rows, params.fee_tier, dtype=object), pa.string()),
    }
    arrays = [computed[f.name] if f.name in computed else columns.column(f.name) for f in FEATURES_1S]
    return pa.Table.from_arrays(arrays, schema=FEATURES_1S)


def _nullable_floats(values: np.ndarray) -> pa.Array:
    return pa.array(values, pa.float64(), from_pandas=True)


def features_path(parquet_root: Path, day: dt.date, symbol: str) -> Path:
    """Where the features of one day x symbol live: ``date=/symbol=/kind=features_1s/features.parquet``."""
    return kind_dir(parquet_root, day, symbol, FEATURES_KIND) / FEATURES_FILE


def write_features(feature_day: FeatureDay, parquet_root: Path) -> Path:
    """Write the table atomically (temp file beside it, fsync, rename): readers see old or new, never half."""
    target = features_path(parquet_root, feature_day.day, feature_day.symbol)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(feature_day.table, temp, compression="zstd", row_group_size=86_400)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target

"""The per-second statistics SQL expresses badly, vectorised with numpy over the day's 86,400 seconds.

Arrays are indexed by second of the day; NaN stands for null (``None`` in string label arrays). No function loops
over seconds in Python: rolling windows are strided views sorted row-wise, rolling sums are cumulative sums.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MAD_TO_SIGMA = 1.4826
"""Scales a median absolute deviation to the standard deviation of a normal distribution."""

_ROWS_PER_CHUNK = 2048
"""Windows sorted at a time: 2,048 x 300 values (4.9 MB) stay in cache between the sort and the deviations."""


def _row_medians(sorted_rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Median of the first ``counts[i]`` values of each sorted row (NaNs sort last); NaN where a row has none."""
    safe = np.maximum(counts, 1)[:, None]
    lower = np.take_along_axis(sorted_rows, (safe - 1) // 2, axis=1)[:, 0]
    upper = np.take_along_axis(sorted_rows, safe // 2, axis=1)[:, 0]
    return np.where(counts > 0, (lower + upper) / 2, np.nan)


def trailing_counts(present: np.ndarray, window: int) -> np.ndarray:
    """Number of present seconds in [t - window, t - 1] for each t (t excluded)."""
    running = np.concatenate([[0], np.cumsum(present, dtype=np.int64)])
    index = np.arange(len(present))
    return running[index] - running[np.maximum(index - window, 0)]


def trailing_median_and_mad(
    values: np.ndarray, present: np.ndarray, window: int, seconds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """At each of ``seconds``: median and MAD of ``values[s]`` over present s in [t - window, t - 1] (t excluded)."""
    sample = np.concatenate([np.full(window, np.nan), np.where(present, values, np.nan)])
    windows = sliding_window_view(sample[:-1], window)
    counts = trailing_counts(~np.isnan(sample[window:]), window)[seconds]  # non-NaN values per window, summed once
    medians = np.empty(len(seconds))
    mads = np.empty(len(seconds))
    for start in range(0, len(seconds), _ROWS_PER_CHUNK):
        chunk = slice(start, start + _ROWS_PER_CHUNK)
        rows = windows[seconds[chunk]]  # a copy, sorted in place: the deviations below do not depend on the order
        rows.sort(axis=1)
        medians[chunk] = _row_medians(rows, counts[chunk])
        deviations = np.abs(rows - medians[chunk, None])
        deviations.sort(axis=1)
        mads[chunk] = _row_medians(deviations, counts[chunk])
    return medians, mads


def robust_zscore(
    values: np.ndarray, present: np.ndarray, window: int, min_count: int, sigma_floor: float, limit: float
) -> np.ndarray:
    """z_t = (x_t - median) / max(1.4826 MAD, sigma_floor) over the trailing window, winsorised to +-limit.

    The sample is the present (non-empty) seconds of [t - window, t - 1]; with fewer than ``min_count`` of them the
    z-score is NaN (warm-up). ``x_t`` itself is used whether or not second t is present (an empty second is a 0).
    Medians are only computed where the warm-up is over.
    """
    z = np.full(len(values), np.nan)
    ready = np.flatnonzero(trailing_counts(present, window) >= max(min_count, 1))
    medians, mads = trailing_median_and_mad(values, present, window, ready)
    z[ready] = (values[ready] - medians) / np.maximum(MAD_TO_SIGMA * mads, sigma_floor)
    return winsorise(z, limit)


def winsorise(z: np.ndarray, limit: float) -> np.ndarray:
    """Clip to [-limit, +limit], keeping NaN."""
    return np.clip(z, -limit, limit)


def fusion(ofi_z: np.ndarray, cvd_z: np.ndarray, w_ofi: float, w_cvd: float) -> np.ndarray:
    """Weighted sum of the two z-scores; NaN when either is."""
    return w_ofi * ofi_z + w_cvd * cvd_z


def fusion_signal(fused: np.ndarray, threshold: float) -> np.ndarray:
    """+1 where fusion >= threshold, -1 where <= -threshold, 0 between; a float array with NaN where fusion is NaN."""
    signal = np.where(fused >= threshold, 1.0, np.where(fused <= -threshold, -1.0, 0.0))
    return np.where(np.isnan(fused), np.nan, signal)


def trailing_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Sum of values[t - window + 1 .. t] (t included; shorter at the start of the day).

    Summed window by window rather than as differences of a cumulative sum, so a window of zeros sums to exactly 0
    and the result never goes negative through cancellation.
    """
    padded = np.concatenate([np.zeros(window - 1), np.asarray(values, dtype=np.float64)])
    return sliding_window_view(padded, window).sum(axis=1)


def trades_per_second(trade_count: np.ndarray, window: int) -> np.ndarray:
    """Trade rate over the trailing window including t, divided by the seconds elapsed in it (min(t + 1, window))."""
    elapsed = np.minimum(np.arange(len(trade_count)) + 1, window)
    return trailing_sum(trade_count.astype(np.float64), window) / elapsed


def realized_volatility(mid: np.ndarray, window: int) -> np.ndarray:
    """sqrt(sum of squared 1-s log returns of mid) over the returns ending in [t - window + 1, t]; NaN without any.

    A return needs a mid at both t - 1 and t; seconds before the first book update contribute nothing.
    """
    returns = np.full(len(mid), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        returns[1:] = np.log(mid[1:] / mid[:-1])
    valid = ~np.isnan(returns)
    squares = trailing_sum(np.where(valid, returns * returns, 0.0), window)
    counts = trailing_sum(valid.astype(np.float64), window)
    return np.where(counts > 0, np.sqrt(squares), np.nan)


def session_labels(second_of_day: np.ndarray) -> np.ndarray:
    """Tokyo for hours 0-7 UTC, London 8-13, NY 14-23."""
    hour = second_of_day // 3600
    return np.where(hour < 8, "Tokyo", np.where(hour < 14, "London", "NY")).astype(object)


def regime_labels(trade_rate: np.ndarray, active_threshold: float) -> np.ndarray:
    """Active where the trailing trade rate is at least ``active_threshold`` trades per second, else Quiet."""
    return np.where(trade_rate >= active_threshold, "Active", "Quiet").astype(object)


def vol_bucket_labels(realized_vol: np.ndarray) -> np.ndarray:
    """High where realised volatility >= the day's median of it (NaNs ignored), Low below; None where undefined."""
    defined = ~np.isnan(realized_vol)
    if not defined.any():
        return np.full(len(realized_vol), None, dtype=object)
    median = np.median(realized_vol[defined])
    labels = np.where(realized_vol >= median, "High", "Low").astype(object)
    labels[~defined] = None
    return labels


def scenario_labels(regime: np.ndarray, vol_bucket: np.ndarray) -> np.ndarray:
    """First letters joined by ``_`` (``A_H``, ``A_L``, ``Q_H``, ``Q_L``); None where the vol bucket is undefined."""
    defined = vol_bucket != None  # noqa: E711 -- elementwise comparison on an object array
    scenario = np.full(len(regime), None, dtype=object)
    scenario[defined] = np.char.add(
        np.char.add(regime[defined].astype(str).astype("<U1"), "_"), vol_bucket[defined].astype(str).astype("<U1")
    )
    return scenario

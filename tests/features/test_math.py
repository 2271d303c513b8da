"""Rolling robust z-scores, fusion and labels on tiny hand-computed arrays."""

from __future__ import annotations

import numpy as np
import pytest

from harvest_pipeline.features import math as fm

WINDOW, MIN_COUNT, FLOOR, LIMIT = 300, 60, 1e-9, 8.0


def zscore(values, present, window=WINDOW, min_count=MIN_COUNT, floor=FLOOR, limit=LIMIT):
    return fm.robust_zscore(np.asarray(values, float), np.asarray(present, bool), window, min_count, floor, limit)


def test_zscore_is_null_until_sixty_non_empty_seconds_precede_t():
    values = np.tile([1.0, 3.0], 50)  # median 2, MAD 1
    z = zscore(values, np.ones(100, bool))
    assert np.isnan(z[:60]).all()  # at t = 59 only seconds 0..58 precede it
    assert z[60] == pytest.approx((1 - 2) / 1.4826)
    assert z[61] == 8.0  # 31 ones and 30 threes: median 1, MAD 0, so the scale is the floor
    assert z[62] == pytest.approx((1 - 2) / 1.4826)


def test_zscore_sample_excludes_t_and_empty_seconds():
    values = np.zeros(200)
    values[:120:2], values[1:120:2] = 1.0, 3.0
    present = np.zeros(200, bool)
    present[:120] = True  # empty seconds after 120 hold 0, which must not enter the sample
    values[150] = 2.5
    z = zscore(values, present)
    assert z[150] == pytest.approx(0.5 / 1.4826)  # median 2 and MAD 1 from the 120 present seconds only
    assert z[160] == pytest.approx(-2 / 1.4826)  # an empty t still gets its own value (0) scored


def test_zscore_window_is_trailing_and_bounded():
    values = np.concatenate([np.full(100, 10.0), np.tile([1.0, 3.0], 100)])
    z = zscore(values, np.ones(300, bool), window=100, min_count=60)
    assert z[200] == pytest.approx((1 - 2) / 1.4826)  # the 10s at 0..99 have left the window [100, 199]


def test_zscore_scale_has_a_floor_and_z_is_winsorised():
    values = np.full(100, 5.0)
    values[80], values[90] = 5.0000001, 4.0
    z = zscore(values, np.ones(100, bool), floor=1e-6)
    assert z[80] == pytest.approx(0.1)  # MAD 0: scale is the floor, 1e-7 / 1e-6
    assert z[90] == -8.0  # -1e6 before winsorisation


def test_winsorise_clips_both_sides_and_keeps_nulls():
    clipped = fm.winsorise(np.array([-20.0, -8.0, 3.0, 8.5, np.nan]), 8.0)
    assert clipped[:4].tolist() == [-8.0, -8.0, 3.0, 8.0] and np.isnan(clipped[4])


def test_fusion_weights_and_signal_thresholds():
    ofi_z = np.array([1.0, 2.0, -1.0, 1.0, np.nan, 0.0])
    cvd_z = np.array([1.0, -0.5, -1.0, 0.9, 1.0, -2.5])
    fused = fm.fusion(ofi_z, cvd_z, 0.6, 0.4)
    assert fused[:4] == pytest.approx([1.0, 1.0, -1.0, 0.96])
    assert np.isnan(fused[4]) and fused[5] == pytest.approx(-1.0)
    signal = fm.fusion_signal(np.array([1.0, 0.9999, -0.9999, -1.0, 7.0, np.nan]), 1.0)
    assert signal[:5].tolist() == [1.0, 0.0, 0.0, -1.0, 1.0] and np.isnan(signal[5])


def test_sessions_switch_at_their_utc_hours():
    seconds = np.array([0, 8 * 3600 - 1, 8 * 3600, 14 * 3600 - 1, 14 * 3600, 86_399])
    assert fm.session_labels(seconds).tolist() == ["Tokyo", "Tokyo", "London", "London", "NY", "NY"]


def test_regime_uses_trailing_trade_rate_with_threshold_inclusive():
    counts = np.array([4, 0, 2, 2, 0, 0])
    rate = fm.trades_per_second(counts, 3)
    assert rate.tolist() == pytest.approx([4.0, 2.0, 2.0, 4 / 3, 4 / 3, 2 / 3])
    assert fm.regime_labels(rate, 2.0).tolist() == ["Active", "Active", "Active", "Quiet", "Quiet", "Quiet"]


def test_realized_volatility_of_mid_log_returns_over_the_trailing_window():
    mid = np.array([np.nan, 100.0, 110.0, 110.0, 99.0])
    rv = fm.realized_volatility(mid, 2)
    r2, r4 = np.log(1.1), np.log(99 / 110)
    assert np.isnan(rv[:2]).all()
    assert rv[2:].tolist() == pytest.approx([abs(r2), abs(r2), abs(r4)])


def test_vol_bucket_splits_at_the_day_median_and_scenario_combines_first_letters():
    rv = np.array([np.nan, 0.1, 0.2, 0.3, 0.4])  # median 0.25
    buckets = fm.vol_bucket_labels(rv)
    assert buckets.tolist() == [None, "Low", "Low", "High", "High"]
    assert fm.vol_bucket_labels(np.array([0.1, 0.2, 0.3])).tolist() == ["Low", "High", "High"]  # = median is High
    regime = np.array(["Active", "Quiet", "Active", "Quiet", "Active"], dtype=object)
    assert fm.scenario_labels(regime, buckets).tolist() == [None, "Q_L", "A_L", "Q_H", "A_H"]

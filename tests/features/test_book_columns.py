"""Columns from the reconstructed book (``book_1s``): multi-level OFI, depth imbalance, and L1 on a day without
bookTicker. Tiny hand-made book files with the real schema (real Parquet, real DuckDB); T0 is 00:00 UTC of the day."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from assets.features import FeaturesConfig
from harvest_pipeline.features.sources import newest_raw_change_ns
from harvest_pipeline.features.table import FeatureParams, build_features
from harvest_pipeline.store import kind_dir
from tests.completeness.rawfiles import write_diffs
from tests.features.rawdata import DAY, SYMBOL, T0, write_book, write_ticks, write_trades
from tests.features.reference import reference_features
from tests.features.test_dagster_assets import assert_matches_reference
from tests.features.test_per_second_columns import at, recording_all_day

L1_COLUMNS = ("best_bid", "best_ask", "bid_size", "ask_size", "mid", "spread_bps", "microprice", "imbalance_l1")
BOOK_COLUMNS = ("ofi_l5", "depth_imbalance_l5", "depth_imbalance_l20")
TOP = {"bids": [("100", "1")], "asks": [("101", "1")]}


def features(root, params: FeatureParams | None = None) -> dict[str, list]:
    return build_features(root, DAY, SYMBOL, params or FeatureParams()).table.to_pydict()


def test_ofi_l5_weighs_the_level_ofis_one_over_k_by_default_and_as_configured(tmp_path):
    write_book(tmp_path, {10: {**TOP, "ofi_levels": [6, 4, 3, -8, 10]}, 12: {**TOP, "ofi_levels": [-1, 0, 0, 0, 0]}})
    c = features(tmp_path)
    assert c["ofi_l5"][10] == pytest.approx(6 + 4 / 2 + 3 / 3 - 8 / 4 + 10 / 5)  # 9
    assert c["ofi_l5"][12] == -1.0
    assert c["ofi_l5"][11] is None, "no OFI where the book is not valid"
    custom = features(tmp_path, FeatureParams(ofi_level_weights=(1, 1, 0, 0, 0)))
    assert custom["ofi_l5"][10] == 10.0


def test_ofi_level_weights_need_one_weight_per_level():
    with pytest.raises(ValueError, match="expected one per book level of ofi_l5, 5"):
        FeatureParams(ofi_level_weights=(1.0, 0.5))
    config = FeaturesConfig(ofi_level_weights=[1, 0, 0, 0, 0])
    assert config.params_for(SYMBOL).ofi_level_weights == (1.0, 0.0, 0.0, 0.0, 0.0)
    assert FeaturesConfig().params_for(SYMBOL).ofi_level_weights == (1.0, 1 / 2, 1 / 3, 1 / 4, 1 / 5)


def test_depth_imbalance_sums_the_top_5_and_top_20_quantities_exactly(tmp_path):
    six_bids = [("100", "1"), ("99.9", "1"), ("99.8", "1"), ("99.7", "1"), ("99.6", "1"), ("99.5", "5")]
    three_asks = [("100.1", "2"), ("100.2", "2"), ("100.3", "1")]
    write_book(
        tmp_path,
        {
            20: {"bids": six_bids, "asks": three_asks},  # top 5: 5 vs 5; top 20: 10 vs 5
            21: {"bids": [("100", "0.1"), ("99.9", "0.2")], "asks": [("100.1", "0.3")]},  # 0.1 + 0.2 == 0.3 exactly
            22: {"bids": [("100", "2")], "asks": []},  # a side may be empty: all the depth is on the other
        },
    )
    c = features(tmp_path)
    assert at(c, 20, "depth_imbalance_l5", "depth_imbalance_l20") == (0.0, pytest.approx((10 - 5) / (10 + 5)))
    assert at(c, 21, "depth_imbalance_l5", "depth_imbalance_l20") == (0.0, 0.0)
    assert at(c, 22, "depth_imbalance_l5", "depth_imbalance_l20") == (1.0, 1.0)
    assert at(c, 23, "depth_imbalance_l5", "depth_imbalance_l20") == (None, None)


def test_without_bookticker_l1_comes_from_the_valid_book_seconds_and_nothing_is_carried(tmp_path):
    recording_all_day(tmp_path)
    write_book(
        tmp_path,
        {
            30: {
                "bids": [("100", "3"), ("99.5", "7")],
                "asks": [("101", "1"), ("101.5", "4")],
                "diffs": 4,
                "ofi_levels": [2.5, 1, 0, 0, 0],
            },
            32: {"valid": False, "diffs": 3},  # diffs arrived, but the book is not known to be the exchange's
            33: {"bids": [("100.5", "2")], "asks": [("101", "2")], "diffs": 0},  # valid, no diff in the second
        },
    )
    c = features(tmp_path)
    assert set(c["l1_source"]) == {"book"}
    assert at(c, 30, "best_bid", "best_ask", "bid_size", "ask_size", "mid") == (100.0, 101.0, 3.0, 1.0, 100.5)
    assert c["spread_bps"][30] == pytest.approx(1 / 100.5 * 1e4)
    assert c["microprice"][30] == pytest.approx((100 * 1 + 101 * 3) / 4)
    assert c["imbalance_l1"][30] == pytest.approx((3 - 1) / 4)
    assert at(c, 30, "book_updates", "ofi", "book_stale") == (4, 2.5, False)
    assert at(c, 31, *L1_COLUMNS) == (None,) * 8, "an invalid second is unknown, not carried from the one before"
    assert at(c, 31, "book_updates", "ofi", "book_stale") == (0, 0.0, True)
    assert at(c, 32, "best_bid", "book_updates", "ofi", "book_stale") == (None, 3, 0.0, True)
    assert at(c, 33, "best_bid", "mid", "book_updates", "ofi", "book_stale") == (100.5, 100.75, 0, 0.0, False)


def test_with_bookticker_the_l1_columns_ignore_the_book_but_its_depth_columns_are_added(tmp_path):
    recording_all_day(tmp_path)
    write_ticks(tmp_path, [(T0 + 40_100, 1, "99", "1", "101", "2")])
    deep = {"bids": [("100", "1"), ("99.9", "3")], "asks": [("100.5", "1")], "diffs": 9, "ofi_levels": [5, 0, 0, 0, 3]}
    write_book(tmp_path, {40: deep, 41: deep})
    c = features(tmp_path)
    assert set(c["l1_source"]) == {"bookticker"}
    assert at(c, 40, "best_bid", "best_ask", "bid_size", "book_updates", "ofi") == (99.0, 101.0, 1.0, 1, 0.0)
    assert at(c, 41, "best_bid", "book_updates", "book_stale") == (99.0, 0, False)
    assert at(c, 41, "ofi_l5", "depth_imbalance_l5") == (pytest.approx(5 + 3 / 5), pytest.approx((4 - 1) / (4 + 1)))
    assert at(c, 42, *BOOK_COLUMNS) == (None, None, None)


@pytest.mark.parametrize("with_ticks, source", [(True, "bookticker"), (False, "none")])
def test_a_day_without_book_1s_has_null_book_columns(tmp_path, with_ticks, source):
    write_trades(tmp_path, [(T0 + 1_000, 1, "100", "1", False)])
    if with_ticks:
        write_ticks(tmp_path, [(T0 + 1_000, 1, "99", "1", "101", "1")])
    c = features(tmp_path)
    assert set(c["l1_source"]) == {source}
    for name in BOOK_COLUMNS:
        assert set(c[name]) == {None}, name
    assert (c["best_bid"][1] is not None) is with_ticks


def test_book_day_matches_the_plain_reference_including_z_scores_and_labels(tmp_path):
    rng = np.random.default_rng(7)
    recording_all_day(tmp_path)
    write_trades(tmp_path, [(T0 + 1_000 * s + 300, s, "100", str(1 + s % 3), bool(s % 2)) for s in range(1, 600)])
    book = {}
    for second in range(600):
        if 200 <= second < 220:  # a break: the book is unknown for 20 s, some diffs still arrived
            book[second] = {"valid": False, "diffs": int(rng.integers(0, 3))}
            continue
        bid = 1000 + int(rng.integers(-3, 4))
        levels = int(rng.integers(1, 25))
        book[second] = {
            "bids": [(f"{(bid - k) / 10:.1f}", f"{rng.integers(1, 900) / 100:.2f}") for k in range(min(levels, 20))],
            "asks": [(f"{(bid + 1 + k) / 10:.1f}", f"{rng.integers(1, 900) / 100:.2f}") for k in range(20)],
            "diffs": int(rng.integers(0, 6)),
            "ofi_levels": [round(float(v), 4) for v in rng.normal(0, 3, 5)],
        }
    write_book(tmp_path, book)
    ledgers = [kind_dir(tmp_path, d, "ALL", "events") for d in (DAY - dt.timedelta(days=1), DAY)]
    reference = reference_features(kind_dir(tmp_path, DAY, SYMBOL, "prices").parent, ledgers, T0)
    table = build_features(tmp_path, DAY, SYMBOL, FeatureParams()).table
    assert_matches_reference(table, reference)
    assert table.column("ofi_z").null_count < 86_400, "the book's seconds feed ofi_z"


def test_new_diffs_count_as_a_change_of_the_day_for_the_refresh_but_the_rebuilt_book_does_not(tmp_path):
    assert newest_raw_change_ns(tmp_path, DAY, SYMBOL) == 0
    write_book(tmp_path, {})
    assert newest_raw_change_ns(tmp_path, DAY, SYMBOL) == 0, "book_1s is what the refresh writes"
    path = write_diffs(tmp_path, [(1, 1, 0)], day=DAY)
    assert newest_raw_change_ns(tmp_path, DAY, SYMBOL) == path.stat().st_mtime_ns

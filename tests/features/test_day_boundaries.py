"""Rows near midnight: compaction picks each row's date partition by one clock, features must pick its second by the
same one, so a row whose trade time and event time fall on two sides of midnight counts in exactly one day."""

from __future__ import annotations

import datetime as dt

from harvest_pipeline.compaction import compact_segment, reconcile
from harvest_pipeline.features.sources import day_start_ms
from harvest_pipeline.features.table import FeatureParams, build_features
from harvest_pipeline.paths import DataPaths
from tests.compaction.frames import MS, SegmentBuilder, agg_trade, book_ticker
from tests.features.rawdata import DAY, SYMBOL

NEXT_DAY = DAY + dt.timedelta(days=1)
MIDNIGHT = day_start_ms(NEXT_DAY)
LAST_SECOND = 86_399


def test_rows_straddling_midnight_count_once_in_the_day_of_their_partition_clock(tmp_path):
    # frames.agg_trade and frames.book_ticker stamp T = E - 1: at E = midnight, T is the last ms of the day before
    trades = ((10, MIDNIGHT - 500, "100.00"), (11, MIDNIGHT, "101.00"), (12, MIDNIGHT + 300, "102.00"))
    tickers = ((20, MIDNIGHT - 200), (21, MIDNIGHT), (22, MIDNIGHT + 100))
    builder = SegmentBuilder(tmp_path, opened_at_ns=(MIDNIGHT - 2_000) * MS)
    builder.control("connect", MIDNIGHT - 1_900)
    for agg_id, event_ms, price in trades:
        builder.frame("btcusdt@aggTrade", agg_trade(SYMBOL, agg_id, event_ms, price=price), event_ms + 3)
    for update_id, event_ms in tickers:
        builder.frame("btcusdt@bookTicker", book_ticker(SYMBOL, update_id, event_ms), event_ms + 3)
    paths = DataPaths.from_root(tmp_path)
    assert reconcile(compact_segment(builder.seal(), paths)).passed

    before = build_features(paths.market_parquet(), DAY, SYMBOL, FeatureParams()).table.to_pydict()
    after = build_features(paths.market_parquet(), NEXT_DAY, SYMBOL, FeatureParams()).table.to_pydict()

    assert sum(before["trade_count"]) + sum(after["trade_count"]) == len(trades)
    assert (before["trade_count"][LAST_SECOND], after["trade_count"][0]) == (2, 1), "trade 11 has T before midnight"
    assert (before["close"][LAST_SECOND], after["open"][0]) == (101.0, 102.0)
    assert sum(before["book_updates"]) + sum(after["book_updates"]) == len(tickers)
    assert (before["book_updates"][LAST_SECOND], after["book_updates"][0]) == (1, 2), "ticker 21 has E at midnight"
    assert before["recorded"][LAST_SECOND] and after["recorded"][0], "the connection is open across midnight"

"""A kline is one row per minute however many updates of it were recorded and wherever they landed: within a segment
and across segments (the day file of consolidation, and features readers), the closed kline wins over every open
state, else the latest open state (real segments, real compaction, real consolidation)."""

from __future__ import annotations

import datetime as dt

import duckdb

from harvest_pipeline import segments
from harvest_pipeline.compaction import compact_segment, reconcile
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.store import kind_dir, read_parquet_sql, visible_files
from harvest_pipeline.store.consolidation import consolidate
from tests.compaction.frames import MS, SegmentBuilder, kline

MIDNIGHT_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = dt.date(2026, 1, 1)
STREAM = "btcusdt@kline_1m"


def segment(root, opened_ms: int, frames: list[tuple[int, int, bool, int]], name_seq: int):
    """A sealed segment of kline frames (open_ms, event_ms, closed, trades), each received 3 ms after its event."""
    builder = SegmentBuilder(root, opened_at_ns=opened_ms * MS)
    builder.control("connect", opened_ms, url="ws://x", route="market", streams=[STREAM])
    for open_ms, event_ms, closed, trades in frames:
        builder.frame(STREAM, kline("BTCUSDT", open_ms, event_ms, closed, trades), event_ms + 3)
    return builder.seal(segments.segment_name(opened_ms * MS, "test", "b00t", name_seq))


def rows(paths: DataPaths) -> list[tuple]:
    files = visible_files(kind_dir(paths.market_parquet(), DAY, "BTCUSDT", "klines"))
    sql = f"SELECT open_time_ms, is_closed, trade_count, event_time_ms FROM {read_parquet_sql(files)} ORDER BY ALL"
    return duckdb.sql(sql).fetchall()


def test_the_closed_kline_wins_within_a_segment_across_segments_and_in_the_day_file(tmp_path):
    m0, m1, m2 = MIDNIGHT_MS, MIDNIGHT_MS + 60_000, MIDNIGHT_MS + 120_000
    paths = DataPaths.from_root(tmp_path)
    first = segment(
        tmp_path,
        m0,
        [(m0, m0 + 250, False, 1), (m0, m0 + 500, False, 2), (m0, m1 + 1, True, 3), (m1, m1 + 250, False, 1)],
        1,
    )
    # the second segment repeats minute 0's closed kline (an overlapping connection) and closes minute 1
    second = segment(
        tmp_path,
        m1 + 300,
        [(m0, m1 + 1, True, 3), (m1, m1 + 500, False, 4), (m1, m2 + 1, True, 5), (m2, m2 + 250, False, 0)],
        2,
    )
    for sealed, duplicates in ((first, 2), (second, 1)):
        report = compact_segment(sealed, paths)
        assert reconcile(report).passed
        assert report.duplicates["klines"] == duplicates

    assert rows(paths) == [  # the parts: minute 0 closed twice, minute 1 open (first) and closed (second)
        (m0, True, 3, m1 + 1),
        (m0, True, 3, m1 + 1),
        (m1, False, 1, m1 + 250),
        (m1, True, 5, m2 + 1),
        (m2, False, 0, m2 + 250),
    ]
    result = consolidate(paths.market_parquet(), DAY, "BTCUSDT", "klines")
    assert (result.rows_in, result.rows_out) == (5, 3)
    assert rows(paths) == [(m0, True, 3, m1 + 1), (m1, True, 5, m2 + 1), (m2, False, 0, m2 + 250)]


def test_without_a_closed_kline_the_latest_open_state_is_kept(tmp_path):
    m0 = MIDNIGHT_MS
    paths = DataPaths.from_root(tmp_path)
    late_first = [(m0, m0 + 750, False, 3), (m0, m0 + 250, False, 1), (m0, m0 + 500, False, 2)]
    compact_segment(segment(tmp_path, m0, late_first, 1), paths)
    assert rows(paths) == [(m0, False, 3, m0 + 750)]

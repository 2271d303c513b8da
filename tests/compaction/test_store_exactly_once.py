"""The Parquet store's rule: compaction and consolidation in any order never make a row visible twice or zero times,
and a compaction that fails leaves none of its segment's new files visible."""

from __future__ import annotations

import errno
from pathlib import Path

import duckdb
import pytest

from harvest_pipeline import segments
from harvest_pipeline.compaction import compact_segment
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.store import sql_literal
from harvest_pipeline.store.consolidation import consolidate
from tests.compaction.frames import MS, SegmentBuilder, agg_trade

DAY_MS = 1_767_225_600_000  # 2026-01-01
HOUR_MS = 3_600_000


def sealed_trades(root: Path, ids: range, counter: int) -> segments.SealedSegment:
    """A sealed segment of aggTrades ``ids`` one second apart, with its own name."""
    opened_ms = DAY_MS + HOUR_MS * counter
    builder = SegmentBuilder(root, opened_at_ns=opened_ms * MS)
    builder.control("connect", opened_ms, url="ws://127.0.0.1:1", streams=["btcusdt@aggTrade"])
    for agg_id in ids:
        event_ms = opened_ms + 1_000 * (agg_id - ids.start + 1)
        builder.frame("btcusdt@aggTrade", agg_trade("BTCUSDT", agg_id, event_ms), event_ms + 3)
    return builder.seal(segments.segment_name(opened_ms * MS, "test", "b00t", counter))


def visible_ids(paths: DataPaths) -> list[int]:
    """Every aggTrade id a reader sees through the documented glob, with repetitions."""
    pattern = sql_literal(paths.market_parquet() / "date=*" / "symbol=*" / "kind=prices" / "*.parquet")
    return sorted(row[0] for row in duckdb.sql(f"SELECT agg_trade_id FROM read_parquet({pattern})").fetchall())


def visible_events(paths: DataPaths) -> int:
    pattern = sql_literal(paths.market_parquet() / "date=*" / "symbol=*" / "kind=events" / "*.parquet")
    return duckdb.sql(f"SELECT count(*) FROM read_parquet({pattern})").fetchall()[0][0]


def test_compact_consolidate_recompact_reconsolidate_and_a_late_part_show_every_row_once(tmp_path):
    paths = DataPaths.from_root(tmp_path / "it's a data root")  # a quote and a space: every SQL path is escaped
    first, late = sealed_trades(paths.root, range(1, 11), 1), sealed_trades(paths.root, range(11, 16), 2)
    day = segments.segment_date(first.name)

    def consolidate_day() -> None:
        for kind in ("prices", "events"):
            consolidate(paths.market_parquet(), day, "BTCUSDT", kind)

    compact_segment(first, paths)
    assert visible_ids(paths) == list(range(1, 11))
    consolidate_day()
    assert visible_ids(paths) == list(range(1, 11))
    compact_segment(first, paths)  # re-compacting a consolidated segment replaces its rows in the day file
    assert visible_ids(paths) == list(range(1, 11)), "a row became visible twice"
    assert visible_events(paths) == 1
    consolidate_day()
    assert visible_ids(paths) == list(range(1, 11))
    compact_segment(late, paths)  # a late part next to the day file
    assert visible_ids(paths) == list(range(1, 16))
    compact_segment(first, paths)
    assert visible_ids(paths) == list(range(1, 16))
    consolidate_day()
    compact_segment(late, paths)
    consolidate_day()
    assert visible_ids(paths) == list(range(1, 16)) and visible_events(paths) == 2


class FailsOnEvents(segments.FileSystem):
    """A disk that fails when the events kind's folder is prepared (after the other kinds were written)."""

    def makedirs(self, path: Path) -> None:
        if path.name == "kind=events":
            raise OSError(errno.ENOSPC, "No space left on device")
        super().makedirs(path)


def test_a_compaction_that_fails_on_one_kind_makes_none_of_its_files_visible(tmp_path):
    paths = DataPaths.from_root(tmp_path)
    sealed = sealed_trades(paths.root, range(1, 6), 1)
    with pytest.raises(OSError, match="No space left"):
        compact_segment(sealed, paths, FailsOnEvents())
    assert not list(paths.market_parquet().rglob("*.parquet")), "a failed compaction left files visible"
    assert not list(paths.market_parquet().rglob(".*.staged")), "staged files were not cleaned up"
    compact_segment(sealed, paths)
    assert visible_ids(paths) == [1, 2, 3, 4, 5] and visible_events(paths) == 1

"""Daily consolidation: dedup across parts, sorted output, atomic visibility, idempotence and crash recovery."""

from __future__ import annotations

import json
import shutil
import threading

import duckdb
import pyarrow.parquet as pq

from harvest_pipeline.schema import PRICES
from harvest_pipeline.store import kind_dir, read_parquet_sql, visible_files
from harvest_pipeline.store.consolidation import consolidate, recover_interrupted
from tests.features.rawdata import DAY, SYMBOL, T0, write_trades


def trade(agg_id: int, offset_ms: int) -> tuple:
    return (T0 + offset_ms, agg_id, "100.5", "0.25", agg_id % 2 == 0)


def glob_rows(root) -> list[tuple]:
    """What a reader sees through the documented glob (ids and times only)."""
    pattern = f"{root}/date=*/symbol=*/kind=prices/*.parquet"
    return duckdb.sql(f"SELECT agg_trade_id, event_time_ms FROM read_parquet('{pattern}')").fetchall()


def test_parts_merge_into_one_sorted_deduplicated_day_file(tmp_path):
    write_trades(tmp_path, [trade(3, 3_000), trade(1, 1_000), trade(2, 2_000)], part="part-b")
    write_trades(tmp_path, [trade(2, 2_000), trade(4, 4_000)], part="part-a")
    result = consolidate(tmp_path, DAY, SYMBOL, "prices")
    assert (result.rows_in, result.rows_out, result.duplicates_removed, result.duplicates_after) == (5, 4, 1, 0)
    assert result.duplicate_rate == 0.2
    files = visible_files(kind_dir(tmp_path, DAY, SYMBOL, "prices"))
    assert [f.name for f in files] == [result.day_file]
    table = pq.read_table(files[0])
    assert table.column("agg_trade_id").to_pylist() == [1, 2, 3, 4]
    assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in PRICES]
    assert sorted(glob_rows(tmp_path)) == [(i, T0 + i * 1000) for i in (1, 2, 3, 4)]
    assert not list(tmp_path.rglob(".kind=*"))  # no staging left behind


def test_consolidating_twice_is_a_no_op_and_late_parts_are_merged_next_time(tmp_path):
    write_trades(tmp_path, [trade(1, 1_000), trade(2, 2_000)], part="part-a")
    first = consolidate(tmp_path, DAY, SYMBOL, "prices")
    again = consolidate(tmp_path, DAY, SYMBOL, "prices")
    assert again == first
    write_trades(tmp_path, [trade(2, 2_000), trade(3, 3_000)], part="part-late")
    merged = consolidate(tmp_path, DAY, SYMBOL, "prices")
    assert merged.sources == ["part-a.parquet", "part-late.parquet"], "every part ever merged, carried forward"
    assert (merged.rows_in, merged.rows_out) == (4, 3)
    assert sorted(glob_rows(tmp_path)) == [(1, T0 + 1000), (2, T0 + 2000), (3, T0 + 3000)]


def test_a_missing_kind_consolidates_to_nothing(tmp_path):
    result = consolidate(tmp_path, DAY, SYMBOL, "bookticker")
    assert (result.rows_in, result.day_file) == (0, None)


def test_readers_never_see_parts_and_day_file_together(tmp_path):
    for part in range(20):
        write_trades(tmp_path, [trade(i, i) for i in range(part * 50, part * 50 + 60)], part=f"part-{part:02d}")
    with_duplicates, deduplicated = 20 * 60, 19 * 50 + 60
    seen: set[int] = set()
    done = threading.Event()

    def read_repeatedly() -> None:
        directory = kind_dir(tmp_path, DAY, SYMBOL, "prices")
        while not done.is_set():
            try:
                seen.add(
                    duckdb.sql(f"SELECT count(*) FROM {read_parquet_sql(visible_files(directory))}").fetchall()[0][0]
                )
            except (duckdb.IOException, FileNotFoundError):
                continue  # listed before the swap, opened after it: a reader retries

    reader = threading.Thread(target=read_repeatedly)
    reader.start()
    try:
        consolidate(tmp_path, DAY, SYMBOL, "prices")
    finally:
        done.set()
        reader.join()
    assert seen and seen <= {with_duplicates, deduplicated}
    assert len(glob_rows(tmp_path)) == deduplicated


def test_a_crash_after_the_swap_is_finished_by_the_next_run(tmp_path):
    write_trades(tmp_path, [trade(1, 1_000)], part="part-a")
    day = consolidate(tmp_path, DAY, SYMBOL, "prices")
    directory = kind_dir(tmp_path, DAY, SYMBOL, "prices")
    # what a crash right after the swap leaves: the old directory, holding merged parts and a late arrival
    leftover = directory.with_name(f".{directory.name}.staging-crashed")
    leftover.mkdir()
    write_trades(tmp_path, [trade(1, 1_000)], part="part-a")
    write_trades(tmp_path, [trade(9, 9_000)], part="part-late")
    for name in ("part-a.parquet", "part-late.parquet"):
        shutil.move(directory / name, leftover / name)
    assert json.loads((directory / day.day_file).with_suffix(".json").read_text())["sources"] == ["part-a.parquet"]
    recover_interrupted(directory)
    assert not leftover.exists()
    assert sorted(p.name for p in visible_files(directory)) == [day.day_file, "part-late.parquet"]
    assert sorted(glob_rows(tmp_path)) == [(1, T0 + 1000), (9, T0 + 9000)]


def test_a_crash_before_the_swap_leaves_the_parts_authoritative(tmp_path):
    write_trades(tmp_path, [trade(1, 1_000)], part="part-a")
    directory = kind_dir(tmp_path, DAY, SYMBOL, "prices")
    staging = directory.with_name(f".{directory.name}.staging-crashed")
    staging.mkdir()
    (staging / "day-unfinished.parquet").write_bytes(b"half a file")
    result = consolidate(tmp_path, DAY, SYMBOL, "prices")
    assert not staging.exists() and result.rows_out == 1

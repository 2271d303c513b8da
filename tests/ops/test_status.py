"""``harvest status`` on a real Dagster instance: bad sidecars, failing and lagging segments each in their own section,
failed runs judged as recovered or not, and no crash on a corrupt sidecar."""

from __future__ import annotations

import argparse
import datetime as dt
import time

import dagster as dg
import pyarrow as pa

from harvest_pipeline.features.sources import day_start_ms
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.status import gather_status, render_status, run
from tests.ops.compacted import compact, write_registered_segments
from tests.ops.segment_files import data_file, sidecar_file

CLOSED_PORT_URL = "http://127.0.0.1:9"


def test_status_separates_bad_sidecars_failing_and_lagging_segments_and_judges_failed_runs(tmp_path):
    paths = DataPaths.from_root(tmp_path)
    paths.dagster_home.mkdir(parents=True)
    with dg.instance_for_test(temp_dir=str(paths.dagster_home)) as instance:
        compacted, failing, lagging, recovered, corrupt, missing = write_registered_segments(tmp_path, instance, 6)
        assert compact(tmp_path, instance, name=compacted)
        data_file(paths, failing).unlink()
        assert not compact(tmp_path, instance, name=failing)
        saved = data_file(paths, recovered).read_bytes()
        data_file(paths, recovered).unlink()
        assert not compact(tmp_path, instance, name=recovered)
        data_file(paths, recovered).write_bytes(saved)
        assert compact(tmp_path, instance, name=recovered)
        sidecar_file(paths, corrupt).write_bytes(b"\x00\x01 not json")
        sidecar_file(paths, missing).unlink()

        status = gather_status(paths, CLOSED_PORT_URL)
        exit_code = run(argparse.Namespace(data=str(tmp_path), metrics_url=CLOSED_PORT_URL, json=True))

    assert status.compaction_error is None
    assert status.sealed_count == 5 and status.last_sealed.name == recovered
    assert [line.split(":")[0] for line in status.sidecar_problems] == [corrupt, missing]
    assert status.lagging == [lagging], "failing and sidecar-less segments are not hidden in the lag"
    assert status.failing == [failing]
    [unrecovered] = status.unrecovered_runs
    assert len(status.failed_runs) == 2
    [healed] = [r for r in status.failed_runs if r.recovered_by]
    assert "segment(s) have been compacted since" in healed.recovered_by
    screen = render_status(status, now=time.time())
    assert "segments without a valid sidecar: 2" in screen and f"  {corrupt}: sidecar corrupt" in screen
    assert f"compaction lag: 1 segment(s) sealed but not compacted, oldest {lagging}" in screen
    assert "compaction failing: 1 segment(s)" in screen and f"\n  {failing}\n" in screen
    assert "failed runs: 1 not recovered in the last 24 h (and 1 recovered by a retry or a later run)" in screen
    assert f"  {unrecovered.run_id[:8]} {unrecovered.job}" in screen
    assert exit_code == 1


def test_status_with_every_sidecar_corrupt_still_renders(tmp_path):
    paths = DataPaths.from_root(tmp_path)
    paths.dagster_home.mkdir(parents=True)
    with dg.instance_for_test(temp_dir=str(paths.dagster_home)) as instance:
        names = write_registered_segments(tmp_path, instance, 2)
        for name in names:
            sidecar_file(paths, name).write_text('{"name": 1}')
        status = gather_status(paths, CLOSED_PORT_URL)

    assert status.last_sealed is None and len(status.sidecar_problems) == 2
    assert "segments: 2 sealed, none with a valid sidecar" in render_status(status)


def write_book_validity(parquet_root, day, intervals):
    """A ``book_validity`` file of ``day`` with these ``(from_ms, to_ms)`` intervals."""
    from harvest_pipeline.book import book_file
    from harvest_pipeline.schema import BOOK_VALIDITY
    from harvest_pipeline.store import write_parquet_atomically

    rows = [
        {"from_time_ms": lo, "to_time_ms": hi, "first_update_id": 1, "last_update_id": 2, "diffs": 1,
         "start": "snapshot", "end": "break"}
        for lo, hi in intervals
    ]  # fmt: skip
    write_parquet_atomically(
        pa.Table.from_pylist(rows, schema=BOOK_VALIDITY), book_file(parquet_root, day, "BTCUSDT", "book_validity")
    )


def test_status_shows_the_last_three_days_certificates_one_line_each_and_asks_for_attention_when_one_fails(tmp_path):
    from harvest_pipeline.completeness import build_certificate, write_certificate
    from tests.completeness.rawfiles import write_prices

    paths = DataPaths.from_root(tmp_path)
    paths.dagster_home.mkdir(parents=True)
    now = time.time()
    today = dt.datetime.fromtimestamp(now, tz=dt.UTC).date()
    yesterday, two_days_ago = today - dt.timedelta(days=1), today - dt.timedelta(days=2)
    write_prices(paths.market_parquet(), range(1, 50), day=two_days_ago)
    write_prices(paths.market_parquet(), [*range(50, 60), *range(70, 80)], day=yesterday)  # 60..69 unexplained
    write_prices(paths.market_parquet(), range(60, 65), source="rest", part="part-r", day=yesterday)  # 60..64 healed
    for day in (two_days_ago, yesterday):
        write_certificate(
            build_certificate(paths.market_parquet(), day, "BTCUSDT"), paths.market_parquet(), day, "BTCUSDT"
        )
    midnight = day_start_ms(two_days_ago)
    write_book_validity(
        paths.market_parquet(),
        two_days_ago,
        [(midnight, midnight + 43_200_000), (midnight + 50_400_000, midnight + 57_600_000)],
    )

    with dg.instance_for_test(temp_dir=str(paths.dagster_home)):  # sets DAGSTER_HOME for this block only
        status = gather_status(paths, CLOSED_PORT_URL, now=now, symbols=("BTCUSDT",))
        exit_code = run(argparse.Namespace(data=str(tmp_path), metrics_url=CLOSED_PORT_URL, json=False))
    screen = render_status(status, now=now).splitlines()

    at = screen.index("completeness (last 3 UTC days):")
    assert screen[at + 1 : at + 4] == [
        f"  {yesterday} BTCUSDT      NOT CERTIFIED: 1 unexplained hole(s); trades 25 (5 from REST); holes healed 1, "
        "declared 0",
        f"  {two_days_ago} BTCUSDT      certified; trades 49 (0 from REST); holes healed 0, declared 0; book valid "
        "58.3 % (2 interval(s))",
        f"  {today - dt.timedelta(days=3)} BTCUSDT      no certificate yet",
    ]
    assert exit_code == 1

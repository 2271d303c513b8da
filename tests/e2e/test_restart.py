"""`harvest up --simulate` killed mid-run and started again on the same data: the features of the whole period equal a
recomputation from the raw segments, and the restart's down time is declared, not hidden."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harvest_pipeline import segments
from harvest_pipeline.book import build_book, write_book
from harvest_pipeline.compaction import compact_segment
from harvest_pipeline.features.table import FeatureParams, build_features, features_path
from harvest_pipeline.paths import DataPaths
from tests.e2e.harness import RunningPipeline, http_json, start_pipeline, wait_for

pytestmark = pytest.mark.e2e

SYMBOL = "BTCUSDT"
STREAMS = [
    f"{SYMBOL.lower()}@{kind}"
    for kind in ("aggTrade", "depth@100ms", "bookTicker", "markPrice@1s", "forceOrder", "kline_1m")
]


def sealed_count(data: Path) -> int:
    return len(segments.list_sealed_segments(data / "segments" / "sealed"))


def start(data: Path) -> RunningPipeline:
    running = start_pipeline(data, watchdog_s=600)  # the quiet market at the end must not look like a dead stream
    wait_for("the Dagster UI", lambda: http_json(f"{running.ui_url}/server_info"), timeout_s=120)
    return running


def recompute_from_raw_segments(data: Path, scratch: Path, day: dt.date) -> object:
    """Compact every sealed segment again into ``scratch`` and build the day's book and features from that alone."""
    paths = DataPaths.from_root(scratch)
    for sealed in segments.list_sealed_segments(data / "segments" / "sealed"):
        compact_segment(sealed, paths)
    write_book(build_book(paths.market_parquet(), day, SYMBOL), paths.market_parquet())
    return build_features(paths.market_parquet(), day, SYMBOL, FeatureParams()).table


def test_kill_and_restart_of_the_whole_pipeline_keeps_features_equal_to_a_recomputation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start(data)
    try:
        wait_for("segments from the first run", lambda: sealed_count(data) >= 3, timeout_s=120)
        first.kill_everything()
        down_from = time.time()
        time.sleep(3.0)  # the exchange trades on while nothing records
    except BaseException:
        print(first.logs())
        raise

    second = start(data)
    try:
        before = sealed_count(data)
        wait_for("segments from the second run", lambda: sealed_count(data) >= before + 3, timeout_s=120)
        for stream in STREAMS:  # quiesce the market so the whole period is a fixed set of frames
            http_json(f"{second.simulator_admin()}/admin/fault", {"fault": "stall_stream", "stream": stream,
                                                                  "seconds": 3600})  # fmt: skip
        time.sleep(8.0)  # the open segment seals (5 s segments) with the last frames
        day = dt.datetime.now(dt.UTC).date()
        expected = recompute_from_raw_segments(data, tmp_path / "recomputed", day)
        target = features_path(data / "parquet" / "market=usdm", day, SYMBOL)

        def pipeline_features_equal() -> bool:
            return target.exists() and pq.read_table(target).equals(expected)

        wait_for("the pipeline's features to equal the recomputation", pipeline_features_equal, 300, interval_s=5)
        table = pq.read_table(target).to_pydict()
        seconds = [i for i, rec in enumerate(table["recorded"]) if not rec]
        down_second = (int(down_from) + 2) % 86_400  # wholly inside the window (the first second is partly recorded)
        assert down_second in seconds, "the seconds nobody recorded are marked recorded = false"
        assert sum(table["trade_count"]) > 0 and table["trade_count"][down_second] == 0
        after_restart = [count for i, count in enumerate(table["trade_count"]) if i > down_second + 5]
        assert sum(after_restart) > 0, "trades after the restart were deduplicated away (simulator ids repeated?)"
    except BaseException:
        print(second.logs())
        raise
    finally:
        assert second.stop() == 0

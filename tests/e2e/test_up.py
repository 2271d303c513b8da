"""`harvest up --simulate` end to end: segments sealed, compacted by Dagster runs, rows equal to what the simulator
sent, today's features built, checks passing, a kill -9 of the collector survived, and the UI showing it all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from harvest_pipeline import segments
from tests.e2e.harness import REPO, RunningPipeline, http_json, start_pipeline, wait_for

pytestmark = pytest.mark.e2e

SYMBOL = "BTCUSDT"
STREAM_KINDS = {"aggTrade": ("prices", "agg_trade_id"), "depth@100ms": ("orderbook", "final_update_id"),
                "bookTicker": ("bookticker", "update_id"), "markPrice@1s": ("mark_price", "event_time_ms"),
                "forceOrder": ("liquidations", "event_time_ms")}  # fmt: skip
"""Default streams whose every frame is one row, by its exchange id (or time)."""
KLINE_STREAM = "kline_1m"
"""The default stream whose frames are updates of one row per minute (``klines``)."""
COMPACTION_JOB = "compact_segments"
ARTIFACTS = Path(os.environ.get("HARVEST_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))

RUNS_QUERY = """
query Runs($statuses: [RunStatus!]) {
  runsOrError(filter: {statuses: $statuses}) { ... on Runs { results { runId jobName status } } }
}"""
CHECKS_QUERY = """
query Checks($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode { assetChecksOrError { ... on AssetChecks {
      checks { name executionForLatestMaterialization { status } } } } }
  }
}"""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPipeline]:
    running = start_pipeline(tmp_path_factory.mktemp("e2e") / "data")
    try:
        wait_for("the Dagster UI", lambda: http_json(f"{running.ui_url}/server_info"), timeout_s=120)
        yield running
    except BaseException:
        print(running.logs())
        raise
    finally:
        code = running.stop()
        assert code == 0, f"harvest up exited {code} on SIGTERM\n{running.logs()}"
        left_open = list((running.data / "segments" / "open").rglob(f"*{segments.OPEN_SUFFIX}"))
        assert not left_open, f"SIGTERM must seal the open segment, found {left_open}"


def succeeded_runs(pipeline: RunningPipeline, job: str) -> list[dict]:
    """Runs of ``job`` that the instance's run history lists as succeeded (through the GraphQL API)."""
    runs = pipeline.graphql(RUNS_QUERY, {"statuses": ["SUCCESS"]})["runsOrError"]["results"]
    return [run for run in runs if run["jobName"] == job]


def parquet_ids(pipeline: RunningPipeline, kind: str, id_column: str) -> tuple[int, int]:
    """(rows, distinct exchange ids) of one raw kind for the symbol, over everything compacted so far."""
    pattern = f"date=*/symbol={SYMBOL}/kind={kind}/*.parquet"
    root = pipeline.data / "parquet" / "market=usdm"
    if not list(root.glob(pattern)):
        return 0, 0
    query = f"SELECT count(*), count(DISTINCT {id_column}) FROM read_parquet('{root / pattern}')"
    return duckdb.sql(query).fetchall()[0]


def latest_check_status(pipeline: RunningPipeline, asset: str, check: str) -> str | None:
    """Status of the check's evaluation for the asset's latest materialization (through the GraphQL API)."""
    node = pipeline.graphql(CHECKS_QUERY, {"key": {"path": [asset]}})["assetNodeOrError"]
    for entry in node["assetChecksOrError"]["checks"]:
        if entry["name"] == check:
            return (entry["executionForLatestMaterialization"] or {}).get("status")
    raise KeyError(f"{asset} has no check {check}")


def sent_frames(pipeline: RunningPipeline) -> dict[str, dict]:
    """The simulator's own account of what it sent, per stream."""
    return http_json(f"{pipeline.simulator_admin()}/admin/accounting")["streams"]


def test_up_compacts_exactly_what_the_simulator_sent_and_builds_todays_features(pipeline: RunningPipeline) -> None:
    sealed_root = pipeline.data / "segments" / "sealed"
    wait_for("two sealed segments", lambda: len(segments.list_sealed_segments(sealed_root)) >= 2, timeout_s=90)
    wait_for("a succeeded compaction run", lambda: succeeded_runs(pipeline, COMPACTION_JOB), timeout_s=180)

    streams = [f"{SYMBOL.lower()}@{kind}" for kind in STREAM_KINDS]
    for stream in [*streams, f"{SYMBOL.lower()}@{KLINE_STREAM}"]:  # quiesce the market: "everything sent" is fixed
        http_json(
            f"{pipeline.simulator_admin()}/admin/fault", {"fault": "stall_stream", "stream": stream, "seconds": 3600}
        )

    observed: dict[str, tuple[int, int, int]] = {}

    def all_sent_frames_compacted() -> bool:
        sent = sent_frames(pipeline)
        for kind_suffix, (kind, id_column) in STREAM_KINDS.items():
            stream = f"{SYMBOL.lower()}@{kind_suffix}"
            observed[stream] = (sent[stream]["frames"], *parquet_ids(pipeline, kind, id_column))
        return all(s == rows == distinct and s > 0 for s, rows, distinct in observed.values())

    try:
        wait_for("Parquet rows equal to the simulator's frames", all_sent_frames_compacted, timeout_s=180, interval_s=3)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; (sent, rows, distinct ids) per stream: {observed}") from None
    counts = observed
    assert set(counts) == set(streams)
    kline_frames = sent_frames(pipeline)[f"{SYMBOL.lower()}@{KLINE_STREAM}"]["frames"]
    kline_rows, kline_minutes = parquet_ids(pipeline, "klines", "open_time_ms")
    assert 0 < kline_minutes <= kline_rows < kline_frames, "klines: one row per minute and segment, from many updates"

    today_features = wait_for(
        "today's features_1s materialized",
        lambda: (
            succeeded_runs(pipeline, "features_refresh_job")
            and list(
                (pipeline.data / "parquet" / "market=usdm").glob(f"date=*/symbol={SYMBOL}/kind=features_1s/*.parquet")
            )
        ),
        timeout_s=180,
        interval_s=3,
    )
    rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{today_features[0]}')").fetchall()[0][0]
    assert rows == 86_400

    for asset, check in (("events", "segment_reconciliation"), ("prices", "agg_trade_id_continuity"),
                         ("orderbook", "pu_continuity")):  # fmt: skip
        status = wait_for(  # one read per poll: a run starting between two reads made this return IN_PROGRESS
            f"a finished {asset}/{check} evaluation",
            lambda asset=asset, check=check: (
                found if (found := latest_check_status(pipeline, asset, check)) not in (None, "IN_PROGRESS") else None
            ),
            timeout_s=60,
        )
        assert status == "SUCCEEDED", f"{asset}/{check}: {status}"

    status = subprocess.run(
        [sys.executable, "-m", "harvest_pipeline.cli", "status", "--data", str(pipeline.data)],
        capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    lag = re.search(r"compaction lag: (\d+) segment", status.stdout)
    assert "btcusdt@aggTrade" in status.stdout and lag and int(lag.group(1)) <= 2, status.stdout
    assert "failed runs: 0" in status.stdout, status.stdout


def test_kill_9_of_the_collector_is_restarted_and_loses_nothing_sealed(pipeline: RunningPipeline) -> None:
    sealed_root = pipeline.data / "segments" / "sealed"
    before = {s.name: s.load_meta().sha256 for s in segments.list_sealed_segments(sealed_root)}
    prices_before = parquet_ids(pipeline, "prices", "agg_trade_id")
    collector = pipeline.up_state()["children"]["collector"]
    http_json(f"{pipeline.simulator_admin()}/admin/fault", {"fault": "clear"})

    os.kill(collector["pid"], signal.SIGKILL)

    restarted = wait_for(
        "the collector to be restarted by up",
        lambda: (
            (state := pipeline.up_state()["children"]["collector"])["restarts"] > collector["restarts"]
            and state["pid"] not in (None, collector["pid"])
            and state
        ),
        timeout_s=60,
    )
    assert restarted["last_exit"] == -signal.SIGKILL
    wait_for(
        "a segment sealed by the restarted collector",
        lambda: len(set(s.name for s in segments.list_sealed_segments(sealed_root)) - set(before)) >= 1,
        timeout_s=60,
    )
    after = {s.name: s.load_meta().sha256 for s in segments.list_sealed_segments(sealed_root)}
    assert {name: after.get(name) for name in before} == before, "a sealed segment changed or disappeared"
    assert parquet_ids(pipeline, "prices", "agg_trade_id")[1] >= prices_before[1]


@pytest.mark.browser
def test_dagster_ui_shows_the_asset_graph_and_a_succeeded_compaction_run(
    pipeline: RunningPipeline, tmp_path: Path
) -> None:
    from selenium import webdriver
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1600,1400"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"), options=options)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def page_text_with(*needles: str) -> str:
        return WebDriverWait(driver, 90, poll_frequency=1).until(
            lambda d: (text := d.find_element("tag name", "body").text) and all(n in text for n in needles) and text
        )

    try:
        driver.get(f"{pipeline.ui_url}/asset-groups")
        page_text_with("Global asset lineage", "raw", "daily", "features")
        driver.save_screenshot(str(ARTIFACTS / "dagster-global-lineage.png"))

        # the raw group as a list: its ten kinds no longer fit a readable graph (zoomed out, the graph hides names)
        driver.get(f"{pipeline.ui_url}/locations/harvest_pipeline.definitions/asset-groups/raw/list")
        page_text_with("prices", "orderbook", "bookticker", "depth_snapshot", "trades", "mark_price", "liquidations",
                       "klines", "open_interest", "events")  # fmt: skip
        driver.save_screenshot(str(ARTIFACTS / "dagster-asset-graph.png"))

        for kind, words in (("mark_price", "funding rate"), ("liquidations", "forceOrder"), ("klines", "kline"),
                            ("open_interest", "open interest"), ("trades", "individual trade")):  # fmt: skip
            driver.get(f"{pipeline.ui_url}/assets/{kind}")
            page_text_with(kind, words)
        driver.save_screenshot(str(ARTIFACTS / "dagster-asset-page-trades.png"))

        # one graph: the upstream lineage of features_1s reaches the raw kinds and the external sealed segments
        driver.get(f"{pipeline.ui_url}/assets/features_1s?view=lineage&lineageScope=upstream&lineageDepth=5")
        upstream = page_text_with("sealed_segments", "prices_daily", "bookticker_daily", "events_daily", "completeness")
        lines = {line.strip() for line in upstream.splitlines()}
        assert {"features_1s", "prices", "bookticker", "events", "sealed_segments"} <= lines, sorted(lines)
        assert "orderbook_daily" in lines, "the book's days reach features_1s through the completeness certificate"
        driver.save_screenshot(str(ARTIFACTS / "dagster-features_1s-upstream-lineage.png"))

        driver.get(f"{pipeline.ui_url}/runs")
        page_text_with(COMPACTION_JOB, "Success")
        driver.save_screenshot(str(ARTIFACTS / "dagster-runs.png"))
    finally:
        driver.quit()
    assert (ARTIFACTS / "dagster-runs.png").stat().st_size > 10_000

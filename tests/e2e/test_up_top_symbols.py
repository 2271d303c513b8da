"""`harvest up --simulate --symbols top:5` works offline: the simulator trades its default instruments, the collector
asks it for the 24 h statistics and records the five busiest contracts by quote volume, and the segments hold their
frames."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from harvest_pipeline import segments
from harvest_pipeline.up import SIMULATOR_READY_FILE
from tests.e2e.harness import http_json, start_pipeline, wait_for

pytestmark = pytest.mark.e2e

REFRESH_S = 2
"""The simulator's statistics start at zero: its first seconds rank by chance (and its three mid-size contracts stay
close for a while), so the collector re-resolves often and the test compares it with the ranking of the moment."""


def simulator_top(data: Path, count: int) -> list[str]:
    """The ``count`` symbols the simulator ranks top by 24 h quote volume right now (its own REST answer)."""
    rest_base = orjson.loads((data / SIMULATOR_READY_FILE).read_bytes())["rest_base"]
    rows = http_json(f"{rest_base}/fapi/v1/ticker/24hr")
    ranked = sorted(rows, key=lambda row: (-Decimal(row["quoteVolume"]), row["symbol"]))
    return sorted(row["symbol"] for row in ranked[:count])


def recorded_symbols(metrics_url: str) -> list[str] | None:
    """What the collector's /healthz says it records (it answers 503 while something is degraded; still JSON)."""
    import urllib.error

    try:
        report = http_json(f"{metrics_url}/healthz")
    except urllib.error.HTTPError as exc:
        report = orjson.loads(exc.read())
    assert report["symbols"]["selection"] == ["top:5"]
    return sorted(report["symbols"]["recorded"])


def sealed_frame_symbols(data: Path) -> set[str]:
    """The symbols with frame records in sealed segments."""
    found: set[str] = set()
    for segment in segments.list_sealed_segments(data / "segments" / "sealed"):
        for _, record in segments.iter_records(segment.path):
            if isinstance(record, dict) and record.get("k") == "frame":
                found.add(record["s"].partition("@")[0].upper())
    return found


def test_up_simulate_top_5_records_the_five_busiest_simulated_contracts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HARVEST_SYMBOLS_REFRESH_S", str(REFRESH_S))
    pipeline = start_pipeline(tmp_path / "data", segment_seconds=2.0, symbols="top:5")
    observed: dict[str, Any] = {}
    try:
        wait_for("the simulator", lambda: (pipeline.data / SIMULATOR_READY_FILE).exists(), timeout_s=30)
        assert len(http_json(f"{pipeline.simulator_admin()}/admin/accounting")["listings"]) == 6, "default set"

        def collector_follows_the_ranking() -> bool:
            observed["recorded"] = recorded_symbols(pipeline.metrics_url)
            observed["top"] = simulator_top(pipeline.data, 5)
            return len(observed["recorded"]) == 5 and observed["recorded"] == observed["top"]

        wait_for("the collector recording the simulator's top 5", collector_follows_the_ranking, timeout_s=45)
        top = observed["top"]
        wait_for("sealed frames of all five", lambda: set(top) <= sealed_frame_symbols(pipeline.data), timeout_s=20)
    except BaseException:
        print(observed, pipeline.logs())
        raise
    finally:
        code = pipeline.stop()
    assert code == 0, f"harvest up exited {code} on SIGTERM\n{pipeline.logs()}"

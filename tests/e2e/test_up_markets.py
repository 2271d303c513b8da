"""`harvest up --simulate --market coinm` runs the whole pipeline on COIN-M offline: the simulator serves COIN-M, the
collector records it, and the Dagster daemon compacts it into the COIN-M root, registers the ``coinm:`` symbol
partition and builds that partition's features."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harvest_pipeline.features.table import features_path
from harvest_pipeline.up import SIMULATOR_READY_FILE
from tests.e2e.harness import http_json, start_pipeline, wait_for

pytestmark = pytest.mark.e2e

SYMBOL = "BTCUSD_PERP"


def features_trades(path: Path) -> int:
    return sum(pq.read_table(path).column("trade_count").to_pylist()) if path.exists() else 0


def test_up_simulate_on_coin_m_compacts_and_builds_the_features_of_the_coin_m_partition(tmp_path: Path) -> None:
    pipeline = start_pipeline(tmp_path / "data", segment_seconds=2.0, symbols=SYMBOL, market="coinm")
    root = pipeline.data / "parquet" / "market=coinm"
    try:
        wait_for("the simulator", lambda: (pipeline.data / SIMULATOR_READY_FILE).exists(), timeout_s=60)
        assert http_json(f"{pipeline.simulator_admin()}/admin/accounting")["listings"].keys() >= {SYMBOL}
        day = dt.datetime.now(dt.UTC).date()
        wait_for("COIN-M prices", lambda: list(root.glob(f"date={day}/symbol={SYMBOL}/kind=prices/*.parquet")), 180)
        target = features_path(root, day, SYMBOL)
        wait_for("the coinm:BTCUSD_PERP features", lambda: features_trades(target) > 0, timeout_s=240, interval_s=3)
        assert not (pipeline.data / "parquet" / "market=usdm").exists(), "nothing was filed as USDⓈ-M"
        assert (pipeline.data / "logs").is_dir()
    except BaseException:
        print(pipeline.logs())
        raise
    finally:
        code = pipeline.stop()
    assert code == 0, f"harvest up exited {code} on SIGTERM\n{pipeline.logs()}"

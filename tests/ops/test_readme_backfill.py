"""The README's backfill command runs as written (from the directory that holds ``data/``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from harvest_pipeline.symbol_partitions import register_symbols

REPO = Path(__file__).resolve().parents[2]


def readme_backfill_command() -> str:
    """The backfill line of the README, exactly as a user copies it."""
    match = re.search(
        r"^\s*(DAGSTER_HOME=\S+ \.venv/bin/dagster asset materialize .+)$", (REPO / "README.md").read_text(), re.M
    )
    assert match, "the README lost its backfill command"
    return match.group(1)


def test_the_readme_backfill_command_materializes_the_partition(tmp_path):
    (tmp_path / "data" / "dagster_home").mkdir(parents=True)
    with dg.DagsterInstance.from_config(str(tmp_path / "data" / "dagster_home")) as instance:
        register_symbols(instance, ["BTCUSDT"])  # a recorded symbol is a partition (compaction registered it)
    venv_bin = Path(sys.executable).parent
    command = readme_backfill_command().replace(".venv/bin/dagster", str(venv_bin / "dagster"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DAGSTER_HOME", None)
    env.pop("HARVEST_DATA_ROOT", None)
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    features = tmp_path / "data/parquet/market=usdm/date=2026-11-25/symbol=BTCUSDT/kind=features_1s/features.parquet"
    assert pq.read_table(features).num_rows == 86_400

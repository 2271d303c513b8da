"""`harvest plot`: features_1s and book_1s days drawn from the Parquet store as PNGs of the documented sizes."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets.features import features_1s
from assets.resources import HarvestStorage
from harvest_pipeline.features.table import FeatureParams, build_features, features_path, write_features
from harvest_pipeline.symbol_partitions import register_symbols
from tests.features.rawdata import DAY, SYMBOL
from tests.features.synthetic import write_synthetic_book, write_synthetic_day

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FEATURES_SIZE = (880, 640)
FEATURES_WITH_BOOK_SIZE = (880, 800)
BOOK_SIZE = (880, 480)
INVALID_BOOK_SECONDS = (0, 600)


def harvest_plot(data_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m harvest_pipeline.cli plot --data ROOT ...`` from the repository, as an operator runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "harvest_pipeline.cli", "plot", "--data", str(data_root), *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)


def parquet_root(data_root: Path) -> Path:
    return data_root / "parquet" / "market=usdm"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A data root with one recorded features day (from 07:00 UTC) and no book."""
    root = parquet_root(tmp_path)
    write_synthetic_day(root, DAY, SYMBOL, trades=20_000, ticks=10_000, start_s=25_200)
    write_features(build_features(root, DAY, SYMBOL, FeatureParams()), root)
    return tmp_path


def written_png(result: subprocess.CompletedProcess[str]) -> Path:
    """The PNG the command says it wrote, checked to be an absolute path to a PNG of plausible size."""
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("wrote ") and "\n" not in line
    path = Path(line.removeprefix("wrote ").split(": ", 1)[0])
    assert path.is_absolute() and path.exists()
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000
    return path


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, the first one of every PNG."""
    data = path.read_bytes()
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_features_plot_writes_an_880x640_png_under_the_data_roots_plots(store):
    result = harvest_plot(store, "--symbol", "btcusdt", "--date", DAY.isoformat())

    path = written_png(result)
    assert path == store.resolve() / "plots" / "usdm" / f"{SYMBOL}-{DAY}-features_1s.png"
    assert png_size(path) == FEATURES_SIZE
    recorded = sum(pq.read_table(features_path(parquet_root(store), DAY, SYMBOL)).column("recorded").to_pylist())
    assert f"features_1s {SYMBOL} {DAY}, 86400 rows, {recorded} seconds recorded" in result.stdout
    assert "book" not in result.stdout


def test_features_plot_adds_the_book_depth_panel_once_the_days_book_exists(store, tmp_path):
    without_book = written_png(harvest_plot(store, "--symbol", SYMBOL, "--date", str(DAY)))
    write_synthetic_book(parquet_root(store), DAY, SYMBOL, invalid_seconds=INVALID_BOOK_SECONDS)

    result = harvest_plot(store, "--symbol", SYMBOL, "--date", str(DAY), "--out", str(tmp_path / "b.png"))

    with_book = written_png(result)
    assert with_book == tmp_path / "b.png" and "with the book depth panel" in result.stdout
    assert png_size(with_book) == FEATURES_WITH_BOOK_SIZE
    assert with_book.read_bytes() != without_book.read_bytes()


def test_features_asset_chart_is_the_plot_with_the_book_panel(store, tmp_path):
    write_synthetic_book(parquet_root(store), DAY, SYMBOL, invalid_seconds=INVALID_BOOK_SECONDS)
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        register_symbols(instance, [SYMBOL])
        result = dg.materialize(
            [features_1s],
            partition_key=dg.MultiPartitionKey({"date": DAY.isoformat(), "symbol": SYMBOL}),
            instance=instance,
            resources={"storage": HarvestStorage(data_root=str(store))},
        )
    assert result.success
    chart = features_path(parquet_root(store), DAY, SYMBOL).with_name("chart.png")

    plot = written_png(harvest_plot(store, "--symbol", SYMBOL, "--date", str(DAY)))

    assert png_size(chart) == FEATURES_WITH_BOOK_SIZE
    assert chart.read_bytes() == plot.read_bytes(), "the command draws what the features_1s asset draws"


def test_book_plot_draws_level_one_spread_and_depth_at_880x480(tmp_path):
    write_synthetic_book(parquet_root(tmp_path), DAY, SYMBOL, invalid_seconds=INVALID_BOOK_SECONDS)

    result = harvest_plot(tmp_path, "--symbol", SYMBOL, "--date", str(DAY), "--kind", "book_1s", "--market", "usdm")

    path = written_png(result)
    assert path == tmp_path.resolve() / "plots" / "usdm" / f"{SYMBOL}-{DAY}-book_1s.png"
    assert png_size(path) == BOOK_SIZE
    valid = 86_400 - (INVALID_BOOK_SECONDS[1] - INVALID_BOOK_SECONDS[0])
    assert f"book_1s {SYMBOL} {DAY}, 86400 rows, {valid} seconds with a valid book" in result.stdout


def assert_fails_with(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit code 2, a message with every fragment, no traceback and no PNG."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert result.stdout == ""


def test_unknown_kind_exits_2_listing_the_valid_kinds(store):
    result = harvest_plot(store, "--symbol", SYMBOL, "--date", str(DAY), "--kind", "trades")

    assert_fails_with(result, "--kind", "'trades'", "features_1s", "book_1s")


def test_missing_features_day_exits_2_naming_the_file_and_how_to_build_it(store):
    result = harvest_plot(store, "--symbol", SYMBOL, "--date", "2026-01-06")

    missing = features_path(parquet_root(store.resolve()), DAY.replace(day=6), SYMBOL)
    assert_fails_with(
        result,
        f"no features_1s for {SYMBOL} on 2026-01-06 (usdm): {missing} does not exist",
        f"Dagster asset features_1s (partition 2026-01-06|{SYMBOL})",
        f"harvest features --date 2026-01-06 --symbol {SYMBOL} --write",
    )
    assert not (store / "plots").exists()


def test_missing_book_day_exits_2_naming_the_book_asset(store):
    result = harvest_plot(store, "--symbol", SYMBOL, "--date", str(DAY), "--kind", "book_1s")

    assert_fails_with(result, "kind=book_1s/book_1s.parquet does not exist", "Dagster asset book_1s")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--date", "2026-02-30", "invalid date '2026-02-30': expected a UTC date YYYY-MM-DD"),
        ("--date", "5.1.2026", "invalid date '5.1.2026'"),
        ("--symbol", "BTC/USDT", "--symbol"),
    ],
)
def test_invalid_date_or_symbol_exits_2_saying_what_was_expected(store, flag, value, message):
    arguments = {"--symbol": SYMBOL, "--date": str(DAY), flag: value}

    result = harvest_plot(store, *(item for pair in arguments.items() for item in pair))

    assert_fails_with(result, message)

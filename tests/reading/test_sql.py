"""``harvest sql`` and the ``reading_catalog`` asset against a store the real pipeline wrote (``conftest.recorded``):
the views hold the rows ``hp.open(root).table`` returns, deduplicated, for every market present; the catalog file is
attached read-only by another connection and sees files written after it."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq

import harvest_pipeline as hp
from assets.catalog import reading_catalog
from assets.resources import HarvestStorage
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.reading.views import CATALOG_FILE, catalog_statements, define_views
from harvest_pipeline.store.layout import kind_dir

REPO = Path(__file__).resolve().parents[2]
COUNTED = ("prices", "bookticker", "events", "features_1s", "completeness")


def harvest_sql(data_root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "harvest_pipeline.cli", "sql", "--data", str(data_root), *args]
    return subprocess.run(command, cwd=REPO, env=env, input=stdin or "", capture_output=True, text=True, timeout=120)


def printed_counts(output: str) -> dict[str, int]:
    """``name=count`` values printed by queries of the form ``SELECT 'name=' || count(*) ...``."""
    return {name: int(count) for name, count in re.findall(r"([\w.]+)=(\d+)", output)}


def count_sql(views: tuple[str, ...]) -> str:
    return "; ".join(f"SELECT '{view}=' || count(*) AS n FROM {view}" for view in views)


def store_count(root: Path, kind: str, market: str | None = None) -> int:
    return hp.open(root).table(kind, market=market).count("*").fetchall()[0][0]


def copy_store(recorded: tuple[Path, int, dict], tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(recorded[0], root)
    return root


def last_day_folder(root: Path, kind: str, symbol: str) -> Path:
    """The folder of ``kind`` for ``symbol`` on the store's second day (still in parts)."""
    return kind_dir(DataPaths.from_root(root).market_parquet(), max(hp.open(root).dates()), symbol, kind)


def last_part(root: Path, kind: str, symbol: str) -> Path:
    return sorted(last_day_folder(root, kind, symbol).glob("part-*.parquet"))[-1]


def test_harvest_sql_counts_equal_the_store_tables_of_each_kind(recorded):
    root, _, _ = recorded
    result = harvest_sql(root, "-c", count_sql((*COUNTED, "usdm.prices")))
    assert result.returncode == 0, result.stderr
    counts = printed_counts(result.stdout)
    for kind in COUNTED:
        assert counts[kind] == store_count(root, kind) > 0, kind
    assert counts["usdm.prices"] == counts["prices"], "the default market's views are also unqualified"
    assert "│" in result.stdout and "varchar" in result.stdout, "results print as tables with their column types"


def test_views_hold_the_rows_and_columns_of_the_store_tables(recorded):
    root, _, _ = recorded
    store = hp.open(root)
    with duckdb.connect() as con:
        views = define_views(con, DataPaths.from_root(root), "usdm")
        assert {"prices", "usdm.prices", "features_1s", "usdm.completeness"} <= set(views)
        assert not any(view.endswith("_daily") for view in views), "a *_daily name is its raw kind's alias"
        assert "liquidations" not in views, "nothing was liquidated: no files, no view"
        for view in (view for view in views if "." not in view):
            table = store.table(view)
            relation = con.sql(f"SELECT * FROM {view}")
            assert relation.columns == table.columns, view
            assert [str(t) for t in relation.types] == [str(t) for t in table.types], view
        for view in ("prices", "orderbook", "events"):
            expected = store.table(view).query("t", "SELECT * FROM t ORDER BY ALL").fetchall()
            assert con.sql(f"SELECT * FROM {view} ORDER BY ALL").fetchall() == expected, view


def test_a_part_delivered_twice_does_not_change_the_count_of_its_view(recorded, tmp_path):
    root = copy_store(recorded, tmp_path)
    query = count_sql(("prices", "features_1s")) + "; SELECT 'files=' || count(*) FROM read_parquet("
    query += f"'{root}/parquet/market=usdm/date=*/symbol=*/kind=prices/*.parquet')"
    before = printed_counts(harvest_sql(root, "-c", query).stdout)
    part = last_part(root, "prices", "ETHUSDT")
    shutil.copy(part, part.with_name(f"part-{part.stem[5:]}-again.parquet"))  # the same rows under another name
    [features] = last_day_folder(root, "features_1s", "ETHUSDT").glob("*.parquet")
    shutil.copy(features, features.with_name(f".{features.name}"))  # hidden: no reader sees it
    after = printed_counts(harvest_sql(root, "-c", query).stdout)
    assert after["files"] == before["files"] + pq.read_metadata(part).num_rows, "the copy is read"
    assert after["prices"] == before["prices"] == store_count(root, "prices")
    assert after["features_1s"] == before["features_1s"] == store_count(root, "features_1s")


def test_a_sql_error_exits_1_with_the_message_and_no_traceback(recorded):
    root, _, _ = recorded
    result = harvest_sql(root, "-c", "SELECT 'first=1'; SELECT no_such_column FROM prices; SELECT 'never=1'")
    assert result.returncode == 1
    assert "no_such_column" in result.stderr and "Traceback" not in result.stderr
    assert printed_counts(result.stdout) == {"first": 1}, "statements stop at the first error"


def test_the_shell_reads_multi_line_statements_lists_views_and_quits(recorded):
    root, _, _ = recorded
    script = "\n".join(
        [
            "SELECT 'trades=' || count(*)",
            "  FROM prices",
            "  WHERE symbol = 'BTCUSDT';",
            "SELECT broken FROM;",
            ".tables",
            ".quit",
            "SELECT 'after_quit=1';",
        ]
    )
    result = harvest_sql(root, stdin=script + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("harvest sql: ") and "harvest> " in result.stdout
    assert printed_counts(result.stdout) == {
        "trades": hp.open(root).table("prices", "BTCUSDT").count("*").fetchall()[0][0]
    }
    assert "syntax error" in result.stderr.lower(), "an error is printed and the shell goes on"
    listed = set(result.stdout.split())
    assert {"prices", "features_1s", "usdm.prices", "usdm.completeness"} <= listed


def test_each_market_gets_its_schema_and_the_chosen_market_is_unqualified(recorded, tmp_path):
    root = copy_store(recorded, tmp_path)
    usdm = root / "parquet/market=usdm"
    day = max(p.name for p in usdm.glob("date=*"))
    shutil.copytree(
        usdm / day / "symbol=BTCUSDT/kind=prices", root / f"parquet/market=spot/{day}/symbol=BTCUSDT/kind=prices"
    )
    spot_count = store_count(root, "prices", market="spot")
    statements = catalog_statements(root / "parquet", "usdm")
    assert sum("VIEW spot." in s for s in statements) == 1 and not any("VIEW spot.bookticker" in s for s in statements)
    default = printed_counts(harvest_sql(root, "-c", count_sql(("prices", "spot.prices", "usdm.prices"))).stdout)
    assert default == {
        "prices": store_count(root, "prices"),
        "spot.prices": spot_count,
        "usdm.prices": default["prices"],
    }
    spot = harvest_sql(root, "--market", "spot", "-c", count_sql(("prices",)) + "; SELECT * FROM bookticker")
    assert printed_counts(spot.stdout)["prices"] == spot_count
    assert spot.returncode == 1 and "bookticker" in spot.stderr, "spot has no bookticker files: no view"


def test_a_column_no_file_has_yet_reads_as_its_default(recorded, tmp_path):
    root = copy_store(recorded, tmp_path)
    files = list((root / "parquet").glob("market=usdm/date=*/symbol=*/kind=prices/*.parquet"))
    for path in files:  # every file written before prices had a source column
        pq.write_table(pq.read_table(path).drop_columns(["source"]), path)
    counts = printed_counts(
        harvest_sql(root, "-c", "SELECT 'source_' || source || '=' || count(*) FROM prices GROUP BY source").stdout
    )
    assert counts == {"source_ws": store_count(root, "prices")}


def materialize_catalog(root: Path, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [reading_catalog], resources={"storage": HarvestStorage(data_root=str(root))}, instance=instance
    )
    assert result.success
    return result


def test_the_catalog_asset_writes_views_another_connection_attaches_read_only(recorded, tmp_path):
    root = copy_store(recorded, tmp_path)
    missing = harvest_sql(root, "--catalog")
    assert missing.returncode == 1 and "reading_catalog" in missing.stderr, "not written yet: says what writes it"
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = materialize_catalog(root, instance)
        written = harvest_sql(root, "--catalog")
        assert written.returncode == 0 and written.stdout.startswith(f"{root / CATALOG_FILE}\n")
        assert f"ATTACH '{root / CATALOG_FILE}' AS harvest (READ_ONLY)" in written.stdout
        [materialization] = result.asset_materializations_for_node("reading_catalog")
        metadata = materialization.metadata
        assert metadata["path"].value == str(root / CATALOG_FILE)
        assert "prices" in metadata["views"].value and "usdm.features_1s" in metadata["views"].value
        prices = store_count(root, "prices")
        reader = duckdb.connect()
        reader.execute(f"ATTACH '{root / CATALOG_FILE}' AS harvest (READ_ONLY)")
        counts = reader.sql(
            "SELECT (SELECT count(*) FROM harvest.usdm.prices), (SELECT count(*) FROM harvest.prices)"
        ).fetchall()
        assert counts == [(prices, prices)]
        part = last_part(root, "prices", "BTCUSDT")
        next_day = dt.date.fromisoformat(part.parts[-4].removeprefix("date=")) + dt.timedelta(days=1)
        later = root / f"parquet/market=usdm/date={next_day}/symbol=BTCUSDT/kind=prices"
        later.mkdir(parents=True)
        shutil.copy(part, later / part.name)  # a part of a new day, written after the catalog
        added = pq.read_metadata(part).num_rows
        assert reader.sql("SELECT count(*) FROM harvest.prices").fetchall() == [(prices + added,)]
        materialize_catalog(root, instance)  # replaced under the reader, which keeps its file
        assert reader.sql("SELECT count(*) FROM harvest.usdm.prices").fetchall() == [(prices + added,)]
        reader.close()
    assert sorted(p.name for p in root.iterdir() if "catalog" in p.name) == [CATALOG_FILE], "no staged file is left"


def test_the_catalog_is_requested_once_when_missing_then_every_hour(tmp_path):
    defs = dg.Definitions(assets=[reading_catalog], resources={"storage": HarvestStorage(data_root=str(tmp_path))})
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        cursor = None

        def requested(hour: int, minute: int) -> int:
            nonlocal cursor
            at = dt.datetime(2026, 1, 6, hour, minute, tzinfo=dt.UTC)
            result = dg.evaluate_automation_conditions(defs, instance, evaluation_time=at, cursor=cursor)
            cursor = result.cursor
            return result.total_requested

        assert requested(0, 10) == 1, "never materialized: requested at the first evaluation"
        assert requested(0, 11) == 0, "its run has not written it yet: not requested twice"
        instance.report_runless_asset_event(dg.AssetMaterialization("reading_catalog"))
        assert requested(0, 40) == 0
        assert requested(1, 1) == 1, "the hourly tick"
        assert requested(1, 30) == 0

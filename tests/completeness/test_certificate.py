"""The certificate as a table and a file: its schema, its rows, its atomic write, and the queries the docs show."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from harvest_pipeline.completeness import build_certificate, certificate_path, write_certificate
from harvest_pipeline.schema import COMPLETENESS
from harvest_pipeline.store import kind_dir
from tests.completeness.rawfiles import DAY, DAY_BEFORE, DEPTH, SYMBOL, TRADES, chain, write_diffs, write_prices
from tests.e2e.readme import sql_statements
from tests.features.rawdata import write_events

DOCS = Path(__file__).resolve().parents[2] / "docs" / "completeness.md"


def test_a_day_without_sequenced_rows_has_an_empty_certificate(tmp_path):
    table = build_certificate(tmp_path, DAY, SYMBOL)
    assert table.schema.equals(COMPLETENESS)
    assert table.num_rows == 0


def test_one_row_per_stream_sorted_with_exactly_the_schema(tmp_path):
    write_diffs(tmp_path, chain(10, 100))
    write_prices(tmp_path, range(1, 10))
    write_events(tmp_path, [{"event": "gap", "event_time_ms": 0, "stream": DEPTH, "reason": "x"}], part="p-ev")
    table = build_certificate(tmp_path, DAY, SYMBOL)
    assert table.schema.equals(COMPLETENESS)
    assert table.column("stream").to_pylist() == [TRADES, DEPTH]
    assert table.column("sequence").to_pylist() == ["agg_trade_id", "depth_pu"]


def test_the_certificate_is_written_beside_the_raw_kinds_and_replaced_whole(tmp_path):
    write_prices(tmp_path, range(1, 10))
    first = write_certificate(build_certificate(tmp_path, DAY, SYMBOL), tmp_path, DAY, SYMBOL)
    assert first == kind_dir(tmp_path, DAY, SYMBOL, "completeness") / "completeness.parquet"
    assert first == certificate_path(tmp_path, DAY, SYMBOL)
    write_prices(tmp_path, [*range(1, 5), *range(7, 10)])
    second = write_certificate(build_certificate(tmp_path, DAY, SYMBOL), tmp_path, DAY, SYMBOL)
    assert second == first
    assert [path.name for path in first.parent.iterdir()] == ["completeness.parquet"]
    stored = pq.read_table(first)
    assert stored.schema.equals(COMPLETENESS)
    assert stored.column("unexplained_holes").to_pylist() == [1]


def test_a_table_of_another_schema_is_refused(tmp_path):
    table = build_certificate(tmp_path, DAY, SYMBOL).drop_columns(["certified"])
    with pytest.raises(ValueError, match="not schema.COMPLETENESS"):
        write_certificate(table, tmp_path, DAY, SYMBOL)
    assert not certificate_path(tmp_path, DAY, SYMBOL).exists()


def test_the_queries_in_the_docs_run_on_stored_certificates(tmp_path, monkeypatch):
    root = tmp_path / "data" / "parquet" / "market=usdm"
    write_prices(root, range(1, 51), day=DAY_BEFORE)
    write_diffs(root, chain(10, 1000), day=DAY_BEFORE)
    write_prices(root, [*range(60, 70), *range(75, 81)])
    write_diffs(root, chain(1010, 2000))
    for day in (DAY_BEFORE, DAY):
        write_certificate(build_certificate(root, day, SYMBOL), root, day, SYMBOL)
    monkeypatch.chdir(tmp_path)
    statements = sql_statements(DOCS.read_text())
    assert len(statements) == 4
    results = [duckdb.sql(statement).fetchall() for statement in statements]
    per_stream, holes, unexplained, book = results
    assert [(str(row[0]), row[1], row[2]) for row in per_stream] == [
        (str(DAY_BEFORE), TRADES, True),
        (str(DAY_BEFORE), "btcusdt@depth", True),
        (str(DAY), TRADES, False),
        (str(DAY), "btcusdt@depth", True),
    ]
    assert [row[3:6] for row in holes] == [(51, 59, 9), (70, 74, 5)]
    assert [row[2:5] for row in unexplained] == [(51, 59, 9), (70, 74, 5)]
    assert [(row[1], row[3], row[4]) for row in book] == [(SYMBOL, False, False), (SYMBOL, False, False)]

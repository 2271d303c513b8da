"""From sealed segments to certified days, and the reconciliation of every trade id the simulator issued.

``compact_and_certify`` runs the downstream path for real (compaction of every sealed segment with its per-line
reconciliation, daily consolidation, the completeness certificate of each day in order); ``reconcile_trades`` checks
the simulator's account of issued ids against what ``prices`` holds and what the certificates declare.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from harvest_pipeline.compaction.segment import compact_segment, reconcile
from harvest_pipeline.completeness import build_certificate, write_certificate
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import list_sealed_segments
from harvest_pipeline.store.consolidation import consolidate
from harvest_pipeline.store.layout import sql_literal

CERTIFIED_KINDS = ("prices", "orderbook", "depth_snapshot", "events")


def compact_and_certify(data_root: Path, symbol: str, market: str = "usdm") -> dict[dt.date, list[dict[str, Any]]]:
    """Compact every sealed segment (each must reconcile line for line), then ``certify_days`` of ``symbol`` on
    ``market``; returns the certificate rows per day."""
    paths = DataPaths.from_root(data_root)
    for sealed in list_sealed_segments(paths.sealed_segments):
        report = compact_segment(sealed, paths)
        check = reconcile(report)
        assert check.passed, check.detail
    return certify_days(paths.market_parquet(market), symbol)


def certify_days(parquet_root: Path, symbol: str) -> dict[dt.date, list[dict[str, Any]]]:
    """Consolidate each recorded day of ``symbol`` and build its certificate, in date order (as the nightly runs
    do); returns the certificate rows per day."""
    days = sorted(dt.date.fromisoformat(p.name.removeprefix("date=")) for p in parquet_root.glob("date=*"))
    certificates = {}
    for day in days:
        for kind in CERTIFIED_KINDS:
            consolidate(parquet_root, day, symbol, kind)
        table = build_certificate(parquet_root, day, symbol)
        write_certificate(table, parquet_root, day, symbol)
        certificates[day] = table.to_pylist()
    return certificates


@dataclass
class TradeReconciliation:
    """Issued ids against stored ones, by how they arrived, and what the certificates say about the rest."""

    issued: int
    stored_by_source: Counter[str]
    never_issued: list[tuple[int, int]]
    declared: list[tuple[int, int, str]]
    missing: list[int]
    """Issued ids in neither ``prices`` nor a declared hole (must be empty)."""


def reconcile_trades(
    data_root: Path, accounting: dict[str, Any], certificates: dict[dt.date, list[dict[str, Any]]], symbol: str
) -> TradeReconciliation:
    """Every id the simulator issued between the first it sent on the stream and the last it issued is stored exactly
    once in ``prices`` or lies in a ``declared`` hole of a certificate; nothing stored was never issued; no
    certificate has an unexplained hole."""
    stream = f"{symbol.lower()}@aggTrade"
    trades = accounting["trades"][symbol]
    first = accounting["streams"][stream]["first_id"]
    last = trades["last_id"]
    skipped = [tuple(pair) for pair in trades["skipped"]]
    issued = {i for i in range(first, last + 1) if not any(low <= i <= high for low, high in skipped)}
    parquet = DataPaths.from_root(data_root).market_parquet()
    glob = sql_literal(parquet / "date=*" / f"symbol={symbol}" / "kind=prices" / "*.parquet")
    rows = duckdb.sql(f"SELECT agg_trade_id, source FROM read_parquet({glob}, hive_partitioning = false)").fetchall()
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids)), "a trade is stored twice"
    stored = set(ids)
    invented = sorted(stored - issued)
    assert not invented, f"stored ids the simulator never issued: {invented[:5]}"
    holes = [
        (hole["first_id"], hole["last_id"], hole["cause"], hole["reason"])
        for rows_of_day in certificates.values()
        for row in rows_of_day
        if row["stream"] == stream
        for hole in row["holes"]
    ]
    unexplained = [hole for hole in holes if hole[2] == "unexplained"]
    assert not unexplained, f"unexplained holes: {unexplained}"
    declared = [(low, high, reason) for low, high, cause, reason in holes if cause == "declared"]
    missing = sorted(i for i in issued - stored if not any(low <= i <= high for low, high, _ in declared))
    return TradeReconciliation(
        issued=len(issued),
        stored_by_source=Counter(source for _, source in rows),
        never_issued=skipped,
        declared=declared,
        missing=missing,
    )

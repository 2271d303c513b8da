"""Raw kinds compacted from sealed segments: one multi-asset partitioned by segment name, and its checks.

The work happens in ``harvest_pipeline.compaction`` (pure functions over paths); this module only maps partitions to
segments, turns reports into metadata and check results, registers the symbols a run recorded first as symbol
partitions, and tells Dagster which failures are worth retrying.
A run may cover a range of segment partitions (``BackfillPolicy.single_run``): the sensor batches a backlog that way.
"""

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from assets.metadata import COLUMN_SCHEMA, OWNERS, ROW_COUNT, code_version, table_schema
from assets.resources import HarvestStorage
from harvest_pipeline import schema, segments
from harvest_pipeline.compaction import DATA_KINDS, CompactionReport, SegmentUnreadable, compact_segment, reconcile
from harvest_pipeline.store.migration import move_legacy_layout
from harvest_pipeline.symbol_partitions import register_symbols

SEGMENT_PARTITIONS = dg.DynamicPartitionsDefinition(name="segments")
"""One partition per sealed segment, registered by the ``sealed_segments`` sensor."""

SEALED_SEGMENTS = dg.AssetSpec(
    "sealed_segments",
    group_name="raw",
    description="Sealed JSONL segments the collector wrote: `segments/sealed/date=YYYY-MM-DD/<name>.jsonl` with a "
    "`.meta.json` sidecar each (harvest_pipeline/segments). Written outside Dagster; the `sealed_segments` sensor "
    "registers each new one as a `segments` partition of the raw kinds. Unpartitioned: one folder, read by every "
    "segment partition (docs/compaction.md, lineage).",
    kinds={"jsonl"},
    owners=OWNERS,
    code_version=f"format-{segments.FORMAT_VERSION}",
)
"""The external source of the raw kinds: declared, never materialized by Dagster."""

RAW_KIND_KEYS = {kind: dg.AssetKey(kind) for kind in schema.RAW_KINDS}
COMPACTION_LOGIC_VERSION = 1
"""Bump when ``harvest_pipeline.compaction`` changes what it writes for the same segment."""
RAW_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=10), warn_window=timedelta(minutes=5))
"""Segments seal every minute and are compacted within seconds: 10 minutes without a compaction is an outage."""

COMPACTION_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
"""Transient I/O (a full or flaky disk) is retried after ~2, 4, 8 s; permanent failures skip retries."""

RECONCILIATION_CHECK = dg.AssetCheckKey(RAW_KIND_KEYS["events"], "segment_reconciliation")
AGG_ID_CHECK = dg.AssetCheckKey(RAW_KIND_KEYS["prices"], "agg_trade_id_continuity")
PU_CHECK = dg.AssetCheckKey(RAW_KIND_KEYS["orderbook"], "pu_continuity")
_GAP_CHECKS = {"agg_trade_id": AGG_ID_CHECK, "pu": PU_CHECK}
MAX_LISTED_GAPS = 50

_DESCRIPTIONS = {
    "prices": "One row per aggTrade, exact decimals, deduplicated by agg id `a`.",
    "orderbook": "One row per depth diff (U, u, pu, bid/ask levels), deduplicated by `u`.",
    "bookticker": "One row per best bid/ask update, deduplicated by `u`.",
    "depth_snapshot": "One row per REST depth snapshot, deduplicated by lastUpdateId.",
    "trades": "One row per individual trade (`@trade`, when subscribed), deduplicated by trade id `t`.",
    "mark_price": "One row per mark price update (mark, index, settle price, funding rate), by event time `E`.",
    "liquidations": "One row per forceOrder event (Binance's latest liquidation per second), by event time `E`.",
    "klines": "One row per 1-minute kline: the closed one, else the latest state of the open one.",
    "open_interest": "One row per polled REST open interest answer, by server time.",
    "events": "Feed ledger: collector control records and compaction quarantine records.",
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key,
            deps=[SEALED_SEGMENTS],
            group_name="raw",
            description=f"{_DESCRIPTIONS[kind]} Files: date=/symbol=/kind={kind}/.",
            metadata={COLUMN_SCHEMA: table_schema(schema.RAW_KINDS[kind])},
            kinds={"duckdb", "parquet"},
            owners=OWNERS,
            code_version=code_version(COMPACTION_LOGIC_VERSION, schema.RAW_KINDS[kind]),
            freshness_policy=RAW_FRESHNESS,
        )
        for kind, key in RAW_KIND_KEYS.items()
    ],
    check_specs=[
        dg.AssetCheckSpec(RECONCILIATION_CHECK.name, asset=RECONCILIATION_CHECK.asset_key),
        dg.AssetCheckSpec(AGG_ID_CHECK.name, asset=AGG_ID_CHECK.asset_key),
        dg.AssetCheckSpec(PU_CHECK.name, asset=PU_CHECK.asset_key),
    ],
    partitions_def=SEGMENT_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=COMPACTION_RETRY,
)
def raw_market_data(
    context: dg.AssetExecutionContext, storage: HarvestStorage
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Compact every segment of the run's partition range into the raw kinds.

    A segment that fails never holds the others hostage: every segment of the range is compacted first; then, if
    any failed, each good segment is materialized as its own partition and the step fails naming only the failed
    ones (Dagster marks just those partitions failed). A permanent failure (missing, unreadable or corrupt segment,
    or an unexpected error) is not retried; a transient I/O error retries the range (compaction is idempotent).
    """
    paths = storage.paths()
    move_legacy_layout(paths.parquet)  # before any write: a store from before markets existed moves first
    reports, failures = _compact_range(context, storage)
    _register_new_symbols(context, reports)
    if failures:
        yield from _materialize_each(context, reports)
        raise _range_failure(failures)
    for kind, key in RAW_KIND_KEYS.items():
        yield dg.MaterializeResult(asset_key=key, metadata=kind_metadata(kind, reports))
    yield from _check_results(reports)
    context.log.info(f"compacted {len(reports)} segment(s) into {paths.parquet}")


@dataclass(frozen=True)
class SegmentFailure:
    """A segment of the range that could not be compacted."""

    name: str
    message: str
    transient: bool


def _compact_range(
    context: dg.AssetExecutionContext, storage: HarvestStorage
) -> tuple[list[CompactionReport], list[SegmentFailure]]:
    reports, failures = [], []
    for name in context.partition_keys:
        try:
            reports.append(_compact(context, storage, name))
        except SegmentUnreadable as exc:
            failures.append(SegmentFailure(name, f"cannot compact segment {name}: {exc}", transient=False))
            context.log.error(failures[-1].message)
        except OSError as exc:
            failures.append(SegmentFailure(name, f"transient I/O error compacting segment {name}: {exc}", True))
            context.log.warning(f"{failures[-1].message} (the run will retry)")
        except Exception as exc:  # a bug or an input nobody foresaw: it must cost this segment only
            message = f"cannot compact segment {name}: unexpected {type(exc).__name__}: {exc}"
            failures.append(SegmentFailure(name, message, transient=False))
            context.log.exception(message)
    return reports, failures


def _compact(context: dg.AssetExecutionContext, storage: HarvestStorage, name: str) -> CompactionReport:
    paths = storage.paths()
    try:
        sealed = segments.find_sealed_segment(paths.sealed_segments, name)
    except FileNotFoundError as exc:
        raise SegmentUnreadable(str(exc)) from exc
    report = compact_segment(sealed, paths, storage.output_fs())
    context.log.info(
        f"segment {name}: {report.lines_read} lines, {sum(report.duplicates.values())} duplicates, "
        f"{report.quarantined} quarantined, {len(report.files)} files in {report.duration_s:.2f} s"
    )
    return report


def _register_new_symbols(context: dg.AssetExecutionContext, reports: list[CompactionReport]) -> None:
    """Make each symbol the run wrote market data for a symbol partition, before any materialization of the run is
    stored (the ``features_refresh`` sensor requests partitions named by them); ``ALL`` and ledger-only symbols never
    become one. One instance query per run."""
    written = {key for report in reports for key in report.partition_keys()}
    added = register_symbols(context.instance, written)
    if added:
        context.log.info(f"new symbol partition(s), first recorded in this run: {', '.join(added)}")


def _materialize_each(
    context: dg.AssetExecutionContext, reports: list[CompactionReport]
) -> Iterator[dg.AssetCheckResult]:
    """Record each compacted segment as its own materialized partition, then the checks over them."""
    for report in reports:
        for kind, key in RAW_KIND_KEYS.items():
            metadata = kind_metadata(kind, [report])
            context.log_event(dg.AssetMaterialization(asset_key=key, partition=report.segment, metadata=metadata))
    if reports:
        yield from _check_results(reports)


def _range_failure(failures: list[SegmentFailure]) -> dg.Failure:
    """One failure naming the failed segments; retryable only when some failure may be transient."""
    transient = any(failure.transient for failure in failures)
    listed = "; ".join(failure.message for failure in failures)
    return dg.Failure(
        description=f"{len(failures)} segment(s) failed{' (transient I/O: retryable)' if transient else ''}: {listed}",
        metadata={"failed_segments": dg.MetadataValue.json({f.name: f.message for f in failures})},
        allow_retries=transient,
    )


def _check_results(reports: list[CompactionReport]) -> Iterator[dg.AssetCheckResult]:
    yield _reconciliation_result(reports)
    for check_name, check_key in _GAP_CHECKS.items():
        yield _continuity_result(check_name, check_key, reports)


def kind_metadata(kind: str, reports: list[CompactionReport]) -> dict[str, dg.MetadataValue]:
    """Rows per date/symbol, bytes, event-time range and duration of one kind over the run's segments."""
    files = [f for report in reports for f in report.files if f.kind == kind]
    rows_by_partition: Counter[str] = Counter()
    for report in reports:
        for f in report.files:
            if f.kind == kind:
                rows_by_partition[f"{f.date}/{report.market.partition_key(f.symbol)}"] += f.rows
    rows = sum(f.rows for f in files)
    metadata: dict[str, dg.MetadataValue] = {
        ROW_COUNT: dg.MetadataValue.int(rows),
        "segments": dg.MetadataValue.int(len(reports)),
        "rows_by_date_symbol": dg.MetadataValue.json(dict(sorted(rows_by_partition.items()))),
        "bytes": dg.MetadataValue.int(sum(f.bytes for f in files)),
        "files": dg.MetadataValue.int(len(files)),
        "duration_s": dg.MetadataValue.float(round(sum(r.duration_s for r in reports), 3)),
    }
    if kind in DATA_KINDS:
        metadata["duplicates_removed"] = dg.MetadataValue.int(sum(r.duplicates[kind] for r in reports))
    if files:
        metadata["first_event_time"] = dg.MetadataValue.text(_iso(min(f.min_time_ms for f in files)))
        metadata["last_event_time"] = dg.MetadataValue.text(_iso(max(f.max_time_ms for f in files)))
    return metadata


def _reconciliation_result(reports: list[CompactionReport]) -> dg.AssetCheckResult:
    results = [reconcile(report) for report in reports]
    failed = [r.detail for r in results if not r.passed]
    return dg.AssetCheckResult(
        check_name=RECONCILIATION_CHECK.name,
        asset_key=RECONCILIATION_CHECK.asset_key,
        passed=not failed,
        description="lines read = rows written + duplicates removed + control records + quarantined, per segment",
        metadata={
            "segments": len(results),
            "lines_read": sum(r.detail["lines_read"] for r in results),
            "quarantined": sum(r.detail["quarantined"] for r in results),
            "failed_segments": dg.MetadataValue.json(failed),
            "per_segment": dg.MetadataValue.json([r.detail for r in results[:MAX_LISTED_GAPS]]),
        },
    )


def _continuity_result(check_name: str, key: dg.AssetCheckKey, reports: list[CompactionReport]) -> dg.AssetCheckResult:
    unexplained: dict[str, list[dict]] = defaultdict(list)
    explained = 0
    for report in reports:
        for gap in report.gaps:
            if gap.check_name != check_name:
                continue
            if gap.explained_by_line is None:
                unexplained[report.segment].append(gap.as_dict())
            else:
                explained += 1
    count = sum(len(gaps) for gaps in unexplained.values())
    listed = {segment: gaps[:MAX_LISTED_GAPS] for segment, gaps in unexplained.items()}
    return dg.AssetCheckResult(
        check_name=key.name,
        asset_key=key.asset_key,
        passed=count == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{check_name} breaks per segment and symbol not explained by a collector gap record",
        metadata={
            "unexplained_gaps": count,
            "explained_gaps": explained,
            "gaps_by_segment": dg.MetadataValue.json(listed),
        },
    )


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


COMPACTION_JOB = dg.define_asset_job(
    "compact_segments",
    selection=dg.AssetSelection.assets(raw_market_data),
    description="Compact sealed segments (a partition range runs as one run).",
    executor_def=dg.in_process_executor,
)
"""The job the sensors request. Its one step runs in the run worker itself: the multiprocess executor would start a
second process per run and import the code location again (~2.7 s per run, docs/freshness.md). ``COMPACTION_RETRY``
works the same in process; a run worker that dies is reported failed by the code server and retried like any failed
run."""

COMPACTION_ASSETS: list[dg.AssetSpec | dg.AssetsDefinition] = [SEALED_SEGMENTS, raw_market_data]

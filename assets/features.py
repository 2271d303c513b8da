"""``features_1s``: the per-second research table of one UTC day x symbol, with its quality checks and chart."""

import datetime as dt

import dagster as dg

from assets.consolidation import DAY_SYMBOL_PARTITIONS, daily_asset_key, partition_day_symbol
from assets.metadata import COLUMN_SCHEMA, OWNERS, ROW_COUNT, code_version, table_schema
from assets.resources import HarvestStorage
from harvest_pipeline.atomic_write import write_bytes_atomically
from harvest_pipeline.dagster_home import DUCKDB_POOL
from harvest_pipeline.features.chart import read_day_book_depth, render_features_chart
from harvest_pipeline.features.quality import (
    MAX_EMPTY_MINUTE_RATE,
    MAX_LATENCY_P50_MS,
    MAX_LATENCY_P99_MS,
    SECONDS_PER_DAY,
    empty_minute_rate,
)
from harvest_pipeline.features.table import FeatureDay, FeatureParams, build_features, write_features
from harvest_pipeline.schema import FEATURES_1S

DEFAULTS = FeatureParams()
FEATURE_KINDS = ("prices", "bookticker", "events", "mark_price", "liquidations", "open_interest")
"""The daily kinds a features day reads."""
FEATURES_LOGIC_VERSION = 2
"""Bump when ``harvest_pipeline.features`` computes different values from the same raw rows."""
FEATURES_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=dt.timedelta(minutes=15), warn_window=dt.timedelta(minutes=9)
)
"""Today is refreshed every 3 minutes while raw parts arrive (``features_refresh``): 3 missed refreshes warn, 5 fail."""
AFTER_CONSOLIDATION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after its day's consolidation")
"""A day x symbol is rebuilt once its consolidated kinds updated (the nightly run, or late data for a past day), when
no consolidation of it is still running. Today's partition is refreshed by the ``features_refresh`` sensor instead."""


class FeaturesConfig(dg.Config):
    """Run-time parameters of ``features_1s`` (defaults from the reference definitions)."""

    zscore_window_s: int = DEFAULTS.zscore_window_s
    zscore_min_count: int = DEFAULTS.zscore_min_count
    sigma_floor: float = DEFAULTS.sigma_floor
    winsor_limit: float = DEFAULTS.winsor_limit
    w_ofi: float = DEFAULTS.w_ofi
    w_cvd: float = DEFAULTS.w_cvd
    signal_threshold: float = DEFAULTS.signal_threshold
    regime_window_s: int = DEFAULTS.regime_window_s
    active_trades_per_s: float = DEFAULTS.active_trades_per_s
    vol_window_s: int = DEFAULTS.vol_window_s
    book_stale_after_s: float = DEFAULTS.book_stale_after_s
    ofi_level_weights: list[float] = list(DEFAULTS.ofi_level_weights)
    default_fee_tier: str = DEFAULTS.fee_tier
    fee_tiers: dict[str, str] = {}

    def params_for(self, symbol: str) -> FeatureParams:
        """The library parameters for one symbol (its fee tier, or the default)."""
        fields = self.model_dump(exclude={"default_fee_tier", "fee_tiers"})
        return FeatureParams(**fields, fee_tier=self.fee_tiers.get(symbol, self.default_fee_tier))


FEATURE_CHECK_SPECS = [
    dg.AssetCheckSpec("row_count_is_86400", asset="features_1s", blocking=True),
    dg.AssetCheckSpec("empty_minute_rate", asset="features_1s"),
    dg.AssetCheckSpec("latency_percentiles", asset="features_1s"),
    dg.AssetCheckSpec("feed_gaps", asset="features_1s"),
]


@dg.asset(
    partitions_def=DAY_SYMBOL_PARTITIONS,
    deps=[*(daily_asset_key(kind) for kind in FEATURE_KINDS), dg.AssetKey("completeness"), dg.AssetKey("book_1s")],
    check_specs=FEATURE_CHECK_SPECS,
    group_name="features",
    kinds={"duckdb", "parquet"},
    owners=OWNERS,
    code_version=code_version(FEATURES_LOGIC_VERSION, FEATURES_1S),
    metadata={COLUMN_SCHEMA: table_schema(FEATURES_1S)},
    automation_condition=AFTER_CONSOLIDATION,
    freshness_policy=FEATURES_FRESHNESS,
    pool=DUCKDB_POOL,
)
def features_1s(
    context: dg.AssetExecutionContext, config: FeaturesConfig, storage: HarvestStorage
) -> dg.MaterializeResult:
    """Every second of the UTC day for one symbol: OHLCV, CVD, L1 book, OFI, z-scores, fusion, labels, quality flags
    (``gap``, ``recorded``: whether a collector was recording the second at all).

    Reads whatever raw Parquet is visible (parts during the day, the consolidated file afterwards) and writes
    ``date=/symbol=/kind=features_1s/features.parquet`` atomically; re-running gives identical rows.
    """
    day, market, symbol = partition_day_symbol(context)
    parquet_root = storage.parquet_root(market)
    feature_day = build_features(parquet_root, day, symbol, config.params_for(symbol))
    path = write_features(feature_day, parquet_root)
    book = read_day_book_depth(parquet_root, day, symbol)  # its depth panel, when the day's book is built
    png = render_features_chart(feature_day.table, f"{market.partition_key(symbol)} {day} features_1s", book)
    chart_path = path.with_name("chart.png")  # on disk, not in the event log: refreshed up to ~480 times a day
    write_bytes_atomically(chart_path, png)
    trades = feature_day.table.column("trade_count").to_numpy()
    return dg.MaterializeResult(
        metadata={
            ROW_COUNT: feature_day.table.num_rows,
            "path": dg.MetadataValue.path(str(path)),
            "trades": int(trades.sum()),
            "non_empty_seconds": int((trades > 0).sum()),
            "recorded_seconds": int(feature_day.table.column("recorded").to_numpy(zero_copy_only=False).sum()),
            "feed_gaps": len(feature_day.gaps),
            "chart_path": dg.MetadataValue.path(str(chart_path)),
        },
        check_results=feature_check_results(feature_day),
    )


def feature_check_results(feature_day: FeatureDay) -> list[dg.AssetCheckResult]:
    """The quality gates of one features day; only the row count blocks (anything else is a warning)."""
    empty = empty_minute_rate(feature_day.table)
    latency = feature_day.latency_ms
    latency_ok = latency["rows"] == 0 or (latency["p50"] < MAX_LATENCY_P50_MS and latency["p99"] < MAX_LATENCY_P99_MS)
    warn = dg.AssetCheckSeverity.WARN
    gaps = [{k: v for k, v in gap.items() if v is not None} for gap in feature_day.gaps]
    return [
        dg.AssetCheckResult(
            check_name="row_count_is_86400",
            passed=feature_day.table.num_rows == SECONDS_PER_DAY,
            metadata={"rows": feature_day.table.num_rows},
        ),
        dg.AssetCheckResult(
            check_name="empty_minute_rate",
            passed=empty["rate"] < MAX_EMPTY_MINUTE_RATE,
            severity=warn,
            metadata={**empty, "limit": MAX_EMPTY_MINUTE_RATE},
        ),
        dg.AssetCheckResult(
            check_name="latency_percentiles",
            passed=latency_ok,
            severity=warn,
            metadata={
                "p50_ms": latency["p50"] if latency["p50"] is not None else float("nan"),
                "p99_ms": latency["p99"] if latency["p99"] is not None else float("nan"),
                "rows": latency["rows"],
                "limits_ms": f"p50 < {MAX_LATENCY_P50_MS}, p99 < {MAX_LATENCY_P99_MS}",
            },
        ),
        dg.AssetCheckResult(
            check_name="feed_gaps",
            passed=not gaps,
            severity=warn,
            metadata={"count": len(gaps), "gaps": dg.MetadataValue.json(gaps)},
        ),
    ]


FEATURE_ASSETS = [features_1s]
"""Its checks are ``check_specs`` of the asset: they run in its step, so the blocking gate sees the fresh table."""

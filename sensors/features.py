"""``features_refresh``: what only a sensor can see, the raw Parquet files of today and which past day a compaction
run wrote to. Everything Dagster can see by itself is declared on the assets (``harvest_automation``):

- ``features_refresh`` (sensor, every 3 min at most), per symbol partition (the instance's ``symbols``, which
  compaction extends as soon as it writes a symbol's first rows: ``harvest_pipeline.symbol_partitions``):
  - today: if today's raw Parquet (prices, bookticker, events, orderbook, depth_snapshot) changed since the last
    request (newest file time), request today's book and then ``features_1s`` for (today, symbol)
    (``features_refresh_job``; today is not consolidated during the day);
  - every other day that received new part files since the cursor: compaction's materializations of the raw kinds
    name the date x symbol each one wrote (metadata ``rows_by_date_symbol``), a mapping from segment to days that
    only the data knows, so no partition mapping can say it. A past day is consolidated again
    (``features_final_job``), and the automation condition of ``features_1s`` rebuilds its features after that, so
    late data after the nightly build is reflected; a day that is not a partition (before ``HARVEST_START_DATE``,
    or ahead of today: a collector clock running fast) is logged and skipped. The cursor is the storage id of the
    last materialization read per kind, so a tick reads only what is new (at most ``MAX_EVENTS_PER_TICK`` per kind),
    never the history.
- ``harvest_automation`` (automation condition sensor, running by default): evaluates the conditions declared on
  the assets, the nightly consolidation of yesterday after 00:20 UTC (``assets.consolidation``) and the rebuild of
  a day's features after its consolidation (``assets.features``).
"""

import datetime as dt
import os
from dataclasses import dataclass, field

import dagster as dg
import orjson

from assets.book import book
from assets.consolidation import CONSOLIDATED_KINDS, DAY_SYMBOL_PARTITIONS, daily_asset_key
from assets.features import features_1s
from assets.resources import HarvestStorage
from harvest_pipeline.features.sources import newest_raw_change_ns
from harvest_pipeline.markets import split_partition_key
from harvest_pipeline.schema import ALL_SYMBOLS
from harvest_pipeline.symbol_partitions import registered_symbols

REFRESH_INTERVAL_S = int(os.environ.get("HARVEST_FEATURES_REFRESH_S", "180"))
"""Minimum seconds between refresh ticks (``HARVEST_FEATURES_REFRESH_S``; tests and demos use less)."""
AUTOMATION_INTERVAL_S = 30
"""Seconds between evaluations of the asset automation conditions (Dagster's default)."""
MAX_EVENTS_PER_TICK = 500
"""Materializations read per raw kind and tick; a longer backlog is read over the next ticks."""
RAW_KEYS = {kind: dg.AssetKey(kind) for kind in CONSOLIDATED_KINDS}
"""The compacted raw kinds (``assets.compaction``) whose new parts make a day's consolidation stale."""

features_refresh_job = dg.define_asset_job(
    "features_refresh_job", selection=dg.AssetSelection.assets(book, features_1s)
)
features_final_job = dg.define_asset_job(
    "features_final_job",
    selection=dg.AssetSelection.assets(*(daily_asset_key(kind) for kind in CONSOLIDATED_KINDS)),
    description="Consolidate a past day again (late data); its final features follow by automation.",
)
HARVEST_AUTOMATION = dg.AutomationConditionSensorDefinition(
    "harvest_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=AUTOMATION_INTERVAL_S,
    emit_backfills=False,
    description="Nightly consolidation of yesterday, features rebuilt after a day's consolidation, and the reading "
    "catalog (catalog.duckdb) every hour.",
)
"""Runs, not backfills: one run per day x symbol, like the schedule and sensor runs it replaces or follows."""


def day_symbol_key(day: dt.date, symbol: str) -> dg.MultiPartitionKey:
    """The partition key of one UTC day x symbol."""
    return dg.MultiPartitionKey({"date": day.isoformat(), "symbol": symbol})


@dataclass
class RefreshCursor:
    """Today's newest raw file time per symbol, and the last raw materialization read per kind."""

    today: dict[str, str] = field(default_factory=dict)
    after: dict[str, int] | None = None
    """Storage id per kind; None until the first tick, which starts at the newest (history is the nightly's job)."""

    @classmethod
    def parse(cls, cursor: str | None) -> "RefreshCursor":
        """The stored cursor (an unreadable or older one starts afresh)."""
        try:
            data = orjson.loads(cursor) if cursor else {}
            after = data.get("after")
            return cls(dict(data.get("today", {})), None if after is None else {k: int(v) for k, v in after.items()})
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
            return cls()

    def dump(self) -> str:
        """The JSON cursor."""
        return orjson.dumps({"today": self.today, "after": self.after}, option=orjson.OPT_SORT_KEYS).decode()


def newest_storage_ids(instance: dg.DagsterInstance) -> dict[str, int]:
    """Storage id of each raw kind's latest materialization (0 when it has none)."""
    ids = {}
    for kind, key in RAW_KEYS.items():
        records = instance.fetch_materializations(key, limit=1).records
        ids[kind] = records[0].storage_id if records else 0
    return ids


def days_with_new_parts(instance: dg.DagsterInstance, after: dict[str, int]) -> tuple[dict[str, int], set[str]]:
    """The ``date/symbol`` cells compaction wrote parts for since ``after``, and the storage ids read up to."""
    read_up_to, cells = dict(after), set[str]()
    for kind, key in RAW_KEYS.items():
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after.get(kind) or None),
            limit=MAX_EVENTS_PER_TICK,
            ascending=True,
        ).records
        for record in records:
            read_up_to[kind] = record.storage_id
            materialization = record.asset_materialization
            rows = materialization.metadata.get("rows_by_date_symbol") if materialization else None
            cells.update(rows.value if isinstance(rows, dg.JsonMetadataValue) and isinstance(rows.value, dict) else ())
    return read_up_to, cells


def day_symbols(cells: set[str], symbols: list[str]) -> tuple[set[tuple[dt.date, str]], list[str]]:
    """Valid (day, symbol) pairs of ``date/symbol`` cells (``ALL`` stands for every USDⓈ-M symbol, ``spot:ALL`` for
    every spot symbol ...), and the cells skipped:
    a symbol that is not one of ``symbols`` (the symbol partitions) or a day outside the partitions."""
    dates = DAY_SYMBOL_PARTITIONS.get_partitions_def_for_dimension("date")
    pairs: set[tuple[dt.date, str]] = set()
    skipped: list[str] = []
    for cell in sorted(cells):
        day_text, _, symbol = cell.partition("/")
        owners = _market_symbols(symbols, symbol) if _is_all(symbol) else [symbol] if symbol in symbols else []
        if not owners or not dates.has_partition_key(day_text):
            skipped.append(cell)
            continue
        pairs.update((dt.date.fromisoformat(day_text), owner) for owner in owners)
    return pairs, skipped


def _is_all(key: str) -> bool:
    try:
        return split_partition_key(key)[1] == ALL_SYMBOLS
    except ValueError:
        return False


def _market_symbols(symbols: list[str], all_key: str) -> list[str]:
    """The symbol partitions of the market ``all_key`` (a market's ``ALL``) names."""
    market = split_partition_key(all_key)[0]
    return [key for key in symbols if split_partition_key(key)[0] == market]


def late_day_requests(pairs: set[tuple[dt.date, str]], today: dt.date, marker: str) -> list[dg.RunRequest]:
    """Consolidation of each past day x symbol (today is left to the file check)."""
    return [
        dg.RunRequest(
            run_key=f"late|{day}|{symbol}|{marker}",
            job_name=features_final_job.name,
            partition_key=day_symbol_key(day, symbol),
        )
        for day, symbol in sorted(pairs)
        if day < today
    ]


@dg.sensor(
    jobs=[features_refresh_job, features_final_job],
    minimum_interval_seconds=REFRESH_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def features_refresh(context: dg.SensorEvaluationContext, storage: HarvestStorage) -> dg.SensorResult:
    """Request today's features, and a new consolidation of every past day x symbol that received new raw parts."""
    today = dt.datetime.now(dt.UTC).date()
    state = RefreshCursor.parse(context.cursor)
    symbols = registered_symbols(context.instance)
    requests = []
    for symbol in symbols:
        market, market_symbol = split_partition_key(symbol)
        changed = newest_raw_change_ns(storage.parquet_root(market), today, market_symbol)
        marker = f"{today}|{changed}"
        if changed and state.today.get(symbol) != marker:
            state.today[symbol] = marker
            requests.append(
                dg.RunRequest(
                    run_key=f"{symbol}|{marker}",
                    job_name=features_refresh_job.name,
                    partition_key=day_symbol_key(today, symbol),
                )
            )
    if state.after is None:
        state.after = newest_storage_ids(context.instance)
    else:
        state.after, cells = days_with_new_parts(context.instance, state.after)
        pairs, skipped = day_symbols(cells, symbols)
        if skipped:
            context.log.warning(f"new parts for unknown symbols or days outside the partitions, ignored: {skipped}")
        requests += late_day_requests(pairs, today, str(max(state.after.values(), default=0)))
    return dg.SensorResult(run_requests=requests, cursor=state.dump())


FEATURE_JOBS = [features_refresh_job, features_final_job]
FEATURE_SENSORS = [features_refresh, HARVEST_AUTOMATION]

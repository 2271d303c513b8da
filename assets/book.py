"""The validated L2 book of one UTC day x symbol: ``book_validity``, ``book_1s``, ``book_checkpoint``, with checks.

One multi-asset, because one replay of the day's diffs writes all three. Its checks: no crossed or locked book inside
a valid interval (blocking: ``features_1s`` of that day is not built in the same run), the share of the day covered
by valid intervals (warn below 99 %), agreement of the book's best bid/ask with bookTicker (warn below 99.9 %).
"""

import dagster as dg

from assets.consolidation import DAILY_FRESHNESS, DAY_SYMBOL_PARTITIONS, daily_asset_key, partition_day_symbol
from assets.features import AFTER_CONSOLIDATION
from assets.metadata import COLUMN_SCHEMA, OWNERS, ROW_COUNT, code_version, table_schema
from assets.resources import HarvestStorage
from harvest_pipeline.book import BookDay, build_book, write_book
from harvest_pipeline.book.decimals import SCALE
from harvest_pipeline.dagster_home import DUCKDB_POOL
from harvest_pipeline.schema import BOOK_KINDS

BOOK_LOGIC_VERSION = 1
"""Bump when ``harvest_pipeline.book`` reconstructs the same diffs differently."""
MIN_VALID_SHARE = 0.99
MIN_TICKER_AGREEMENT = 0.999
BOOK_READS = ("orderbook", "depth_snapshot", "bookticker", "events")
"""The daily kinds a book day reads (and the day before's checkpoint, the next day's first diff)."""

_DESCRIPTIONS = {
    "book_validity": "Intervals [from, to) of the UTC day in which the reconstructed book is provably the exchange's "
    "(Binance USD-M sync rules), how each started (snapshot or carried over midnight) and why it ended.",
    "book_1s": "The book at every second end of the UTC day: top 20 levels per side (exact decimals), last update "
    "id, valid flag (levels null outside a valid interval), diffs applied and level-wise OFI of levels 1..5.",
    "book_checkpoint": "The whole book at every minute end (1,440 rows): start a replay anywhere from a valid row.",
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            kind,
            group_name="book",
            description=_DESCRIPTIONS[kind],
            deps=[daily_asset_key(read) for read in BOOK_READS],
            metadata={COLUMN_SCHEMA: table_schema(schema)},
            kinds={"parquet"},
            owners=OWNERS,
            code_version=code_version(BOOK_LOGIC_VERSION, schema),
            automation_condition=AFTER_CONSOLIDATION,
            freshness_policy=DAILY_FRESHNESS,
        )
        for kind, schema in BOOK_KINDS.items()
    ],
    check_specs=[
        dg.AssetCheckSpec("no_crossed_book", asset="book_1s", blocking=True),
        dg.AssetCheckSpec("valid_share", asset="book_validity"),
        dg.AssetCheckSpec("bookticker_agreement", asset="book_1s"),
    ],
    partitions_def=DAY_SYMBOL_PARTITIONS,
    pool=DUCKDB_POOL,
)
def book(context: dg.AssetExecutionContext, storage: HarvestStorage):
    """Replay the day's depth diffs from REST snapshots (or the day before's last checkpoint) and write the three
    kinds (docs/book.md). Build days in order: a day starts from the book the day before ended with."""
    day, market, symbol = partition_day_symbol(context)
    parquet_root = storage.parquet_root(market)
    built = build_book(parquet_root, day, symbol)
    paths = write_book(built, parquet_root)
    for kind, table in (
        ("book_validity", built.validity),
        ("book_1s", built.seconds),
        ("book_checkpoint", built.checkpoints),
    ):
        metadata: dict[str, dg.RawMetadataValue] = {
            ROW_COUNT: table.num_rows,
            "path": dg.MetadataValue.path(str(paths[kind])),
        }
        if kind == "book_validity":
            metadata["valid_share"] = round(built.valid_share, 6)
        if kind == "book_1s":
            metadata["diffs"] = built.stats.diffs
            metadata["diffs_applied"] = built.stats.applied
        yield dg.MaterializeResult(asset_key=kind, metadata=metadata)
    yield from book_check_results(built)


def book_check_results(built: BookDay) -> list[dg.AssetCheckResult]:
    """The book's checks: crossed books block, coverage and bookTicker agreement warn."""
    stats = built.stats
    warn = dg.AssetCheckSeverity.WARN
    agreement = built.ticker_agreement
    ends = [
        {"end": row["end"], "reason": row["end_reason"]}
        for row in built.validity.select(["end", "end_reason"]).to_pylist()
    ]
    crossed = [
        {**example, "bid": example["bid"] / SCALE, "ask": example["ask"] / SCALE} for example in stats.crossed_examples
    ]
    return [
        dg.AssetCheckResult(
            asset_key="book_1s",
            check_name="no_crossed_book",
            passed=stats.crossed == 0,
            metadata={"crossed_or_locked_diffs": stats.crossed, "first": dg.MetadataValue.json(crossed)},
        ),
        dg.AssetCheckResult(
            asset_key="book_validity",
            check_name="valid_share",
            passed=built.valid_share >= MIN_VALID_SHARE,
            severity=warn,
            metadata={
                "valid_share": round(built.valid_share, 6),
                "limit": MIN_VALID_SHARE,
                "intervals": built.validity.num_rows,
                "ends": dg.MetadataValue.json(ends),
            },
        ),
        dg.AssetCheckResult(
            asset_key="book_1s",
            check_name="bookticker_agreement",
            passed=agreement is None or agreement >= MIN_TICKER_AGREEMENT,
            severity=warn,
            metadata={
                "compared": stats.ticker_compared,
                "agreed": stats.ticker_agreed,
                "rate": agreement if agreement is not None else float("nan"),
                "limit": MIN_TICKER_AGREEMENT,
                "first_disagreements": dg.MetadataValue.json(stats.ticker_disagreements),
            },
        ),
    ]


BOOK_ASSETS = [book]

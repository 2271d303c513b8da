"""Book reconstruction of one busy synthetic day x symbol, against a same-run plain-dict replay of the same diffs.

    python bench/book.py [--diffs 864000] [--levels-per-side 20] [--seed 1] [--rounds 1] [--keep DIR]

Writes a BTC-like day (tick 0.1 around 97,000; one diff every 100 ms with a Poisson number of level changes per side,
about 1 KB frames; one 1,000-level REST snapshot at the start) as ``orderbook`` and ``depth_snapshot`` part files,
then times ``build_book`` (read + replay + tables) and ``write_book``. The baseline applies the same diffs, already in
memory as Python lists of ints, to one dict per side. Goal: build_book + write_book <= 60 s. ``--diffs 20000`` is a
quick smoke run (it exits with 1 when the book is not valid all along or ever crossed).
"""

import argparse
import datetime as dt
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from harvest_pipeline.book import BookDay, build_book, write_book  # noqa: E402
from harvest_pipeline.book.decimals import decimal_array  # noqa: E402
from harvest_pipeline.book.replay import MS_PER_DAY  # noqa: E402
from harvest_pipeline.book.sources import read_diffs  # noqa: E402
from harvest_pipeline.features.sources import day_start_ms  # noqa: E402
from harvest_pipeline.schema import DEPTH_SNAPSHOT, LEVEL, LEVELS, ORDERBOOK  # noqa: E402
from harvest_pipeline.segments import segment_name  # noqa: E402
from harvest_pipeline.store import kind_dir, part_name, visible_files, write_parquet_atomically  # noqa: E402

DAY = dt.date(2026, 3, 2)
SYMBOL = "BTCUSDT"
PARTS = 24
"""Part files per kind, like one compaction part per hourly segment."""
TICK = 10**7
"""0.1 in DECIMAL(18, 8) units."""
QTY_STEP = 10**5
"""0.001: quantities have 3 decimals."""
START_TICKS = 970_000
"""The first mid, 97,000.0, in ticks."""
MOVE_TICKS = 3.0
"""Standard deviation of the mid's move per diff, in ticks (a day's range of a few hundred dollars)."""
NEAR_GAP = 0.4
"""A diff's near levels are distinct, each a geometric gap (this success probability: 2.5 ticks on average) further
from the mid than the one before, so 20 of them span about 50 ticks from the touch."""
DEEP_SHARE, DEEP_TICKS = 0.1, 1000
"""Share of level changes anywhere up to ``DEEP_TICKS`` from the mid."""
DELETE_SHARE = 0.3
SNAPSHOT_LEVELS, SNAPSHOT_SPAN = 1000, 1500
"""Levels per side of the starting REST snapshot, spread over this many ticks from the mid."""


@dataclass
class Walk:
    """Where the generator is between parts: the mid boundary (bids <= ``boundary`` < asks, in ticks), the last
    ``final_update_id`` and the diffs written so far."""

    boundary: int
    final_id: int
    diffs: int = 0
    level_updates: int = 0
    deletions: int = 0
    last_event_ms: int = 0


def side_changes(
    rng: np.random.Generator, before: np.ndarray, after: np.ndarray, mean_levels: float, is_bid: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One side's level changes of ``len(after)`` diffs as ``(offsets, price ticks, qty in 0.001)``, best first.

    A diff changes a Poisson number of levels near its mid (``NEAR_GAP``; ``DEEP_SHARE`` of them anywhere up to
    ``DEEP_TICKS`` instead), ``DELETE_SHARE`` of them to 0, and deletes every price the mid's move from ``before`` to
    ``after`` passed over, so the book never crosses. A price appears at most once per diff.
    """
    count = len(after)
    per_diff = rng.poisson(mean_levels, count)
    diff_of = np.repeat(np.arange(count), per_diff)
    gaps = rng.geometric(NEAR_GAP, len(diff_of))
    steps = np.cumsum(gaps)
    group_start = np.repeat(np.cumsum(per_diff) - per_diff, per_diff)
    near = steps - steps[group_start] + gaps[group_start]
    deep = rng.integers(1, DEEP_TICKS + 1, len(diff_of))
    distance = np.where(rng.random(len(diff_of)) < DEEP_SHARE, deep, np.minimum(near, DEEP_TICKS))
    prices = after[diff_of] - distance + 1 if is_bid else after[diff_of] + distance
    qtys = np.maximum(np.rint(rng.lognormal(np.log(500), 1.2, len(diff_of))), 1).astype(np.int64)
    qtys[rng.random(len(diff_of)) < DELETE_SHARE] = 0
    passed = np.maximum(before - after if is_bid else after - before, 0)
    passed_diff = np.repeat(np.arange(count), passed)
    step = np.arange(len(passed_diff)) - np.repeat(np.cumsum(passed) - passed, passed)
    passed_prices = np.minimum(before, after)[passed_diff] + 1 + step
    diff_of = np.concatenate([diff_of, passed_diff])
    prices = np.concatenate([prices, passed_prices])
    qtys = np.concatenate([qtys, np.zeros(len(passed_diff), dtype=np.int64)])
    order = np.lexsort((-prices if is_bid else prices, diff_of))
    diff_of, prices, qtys = diff_of[order], prices[order], qtys[order]
    first = np.ones(len(prices), dtype=bool)
    first[1:] = (diff_of[1:] != diff_of[:-1]) | (prices[1:] != prices[:-1])
    diff_of, prices, qtys = diff_of[first], prices[first], qtys[first]
    offsets = np.zeros(count + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(np.bincount(diff_of, minlength=count))
    return offsets, prices, qtys


def level_list(offsets: np.ndarray, price_ticks: np.ndarray, qty_steps: np.ndarray) -> pa.Array:
    """A ``LEVELS`` column from per-row offsets, prices in ticks and quantities in 0.001."""
    levels = pa.StructArray.from_arrays(
        [decimal_array(price_ticks * TICK), decimal_array(qty_steps * QTY_STEP)], fields=list(LEVEL)
    )
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), levels, type=LEVELS)


def provenance(
    rng: np.random.Generator, event_ms: np.ndarray, latency_ms: np.ndarray, segment: str
) -> dict[str, pa.Array | np.ndarray]:
    """Plausible provenance columns of rows received ``latency_ms`` after their event on one connection into one
    segment."""
    return {
        "recv_time_ns": (event_ms + latency_ms) * 1_000_000 + rng.integers(0, 1_000_000, len(event_ms)),
        "conn_id": pa.array(["c1"] * len(event_ms)),
        "segment": pa.array([segment] * len(event_ms)),
        "line": np.arange(1, len(event_ms) + 1, dtype=np.int64),
    }


def diff_part(
    rng: np.random.Generator, walk: Walk, count: int, spacing_ms: int, mean_levels: float, counter: int
) -> pa.Table:
    """The next ``count`` diffs of the day as an ``ORDERBOOK`` table of segment number ``counter`` (``walk`` moves
    on)."""
    index = walk.diffs + np.arange(count, dtype=np.int64)
    moves = np.rint(rng.normal(0, MOVE_TICKS, count)).astype(np.int64)
    if walk.diffs == 0:
        moves[0] = 0  # the first diff is at the snapshot's mid
    after = walk.boundary + np.cumsum(moves)
    before = after - moves
    bid_offsets, bid_prices, bid_qtys = side_changes(rng, before, after, mean_levels, is_bid=True)
    ask_offsets, ask_prices, ask_qtys = side_changes(rng, before, after, mean_levels, is_bid=False)
    final_ids = walk.final_id + np.cumsum(1 + rng.poisson(40, count))
    prev_ids = np.concatenate([[walk.final_id], final_ids[:-1]])
    event_ms = day_start_ms(DAY) + spacing_ms * index + rng.integers(0, max(1, spacing_ms // 2), count)
    segment = segment_name(int(event_ms[0]) * 1_000_000, "bench", "b00t", counter)
    walk.boundary, walk.final_id, walk.diffs = int(after[-1]), int(final_ids[-1]), walk.diffs + count
    walk.last_event_ms = int(event_ms[-1])
    walk.level_updates += len(bid_prices) + len(ask_prices)
    walk.deletions += int(np.count_nonzero(bid_qtys == 0) + np.count_nonzero(ask_qtys == 0))
    latency_ms = 2 + rng.geometric(0.2, count).astype(np.int64)
    columns = {
        "event_time_ms": event_ms,
        "transaction_time_ms": event_ms - rng.integers(0, 3, count),
        "first_update_id": prev_ids + 1,
        "final_update_id": final_ids,
        "prev_final_update_id": prev_ids,
        "bids": level_list(bid_offsets, bid_prices, bid_qtys),
        "asks": level_list(ask_offsets, ask_prices, ask_qtys),
        "latency_ms": latency_ms,
        **provenance(rng, event_ms, latency_ms, segment),
    }
    return pa.table(columns, schema=ORDERBOOK)


def snapshot_table(rng: np.random.Generator, boundary: int, first_diff: pa.Table) -> pa.Table:
    """The REST snapshot that starts the book: ``U <= L <= u`` of the first diff, levels on either side of the mid."""
    first_id = first_diff.column("first_update_id")[0].as_py()
    last_id = first_id + int(rng.integers(0, first_diff.column("final_update_id")[0].as_py() - first_id + 1))
    event_ms = np.array([max(day_start_ms(DAY), first_diff.column("event_time_ms")[0].as_py() - 40)], dtype=np.int64)

    def side(is_bid: bool) -> pa.Array:
        distance = np.sort(rng.choice(SNAPSHOT_SPAN, SNAPSHOT_LEVELS, replace=False))
        prices = boundary - distance if is_bid else boundary + 1 + distance
        qtys = np.maximum(np.rint(rng.lognormal(np.log(500), 1.2, SNAPSHOT_LEVELS)), 1).astype(np.int64)
        return level_list(np.array([0, SNAPSHOT_LEVELS]), prices, qtys)

    segment = first_diff.column("segment")[0].as_py()
    columns = {
        "event_time_ms": event_ms,
        "transaction_time_ms": event_ms,
        "last_update_id": np.array([last_id], dtype=np.int64),
        "bids": side(is_bid=True),
        "asks": side(is_bid=False),
        **provenance(rng, event_ms, np.array([150]), segment),
    }
    return pa.table(columns, schema=DEPTH_SNAPSHOT)


def write_day(root: Path, diffs: int, mean_levels: float, seed: int) -> Walk:
    """Write the day's diffs as ``PARTS`` part files and its starting snapshot; returns what was written."""
    rng = np.random.default_rng(seed)
    walk = Walk(boundary=START_TICKS, final_id=9_000_000_000_000)
    spacing_ms = min(100, MS_PER_DAY // diffs)
    bounds = np.linspace(0, diffs, PARTS + 1).astype(int)
    for counter, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True), 1):
        part = diff_part(rng, walk, int(hi - lo), spacing_ms, mean_levels, counter)
        segment = part.column("segment")[0].as_py()
        if lo == 0:
            snapshot = snapshot_table(rng, START_TICKS, part)
            write_parquet_atomically(snapshot, kind_dir(root, DAY, SYMBOL, "depth_snapshot") / part_name(segment))
        write_parquet_atomically(part, kind_dir(root, DAY, SYMBOL, "orderbook") / part_name(segment))
    return walk


def timed_build(root: Path, now_ms: int) -> tuple[float, float, BookDay]:
    """``build_book`` then ``write_book``: their seconds and the book."""
    started = time.perf_counter()
    book = build_book(root, DAY, SYMBOL, now_ms=now_ms)
    built = time.perf_counter()
    write_book(book, root)
    return built - started, time.perf_counter() - built, book


def baseline_levels(root: Path) -> tuple[list[int], ...]:
    """The diffs' levels as Python lists of ints (offsets, prices, qtys per side), read back from the written files
    (the baseline's input, not timed)."""
    diffs = read_diffs(visible_files(kind_dir(root, DAY, SYMBOL, "orderbook")))
    columns = (diffs.bid_offsets, diffs.bid_prices, diffs.bid_qtys, diffs.ask_offsets, diffs.ask_prices, diffs.ask_qtys)
    return tuple(column.tolist() for column in columns)


def dict_replay_seconds(levels: tuple[list[int], ...]) -> float:
    """The baseline: every diff's levels applied to one dict per side, nothing else."""
    bid_offsets, bid_prices, bid_qtys, ask_offsets, ask_prices, ask_qtys = levels
    started = time.perf_counter()
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    for index in range(len(bid_offsets) - 1):
        for at in range(bid_offsets[index], bid_offsets[index + 1]):
            qty = bid_qtys[at]
            if qty:
                bids[bid_prices[at]] = qty
            else:
                bids.pop(bid_prices[at], None)
        for at in range(ask_offsets[index], ask_offsets[index + 1]):
            qty = ask_qtys[at]
            if qty:
                asks[ask_prices[at]] = qty
            else:
                asks.pop(ask_prices[at], None)
    return time.perf_counter() - started


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffs", type=int, default=864_000, help="diffs in the day (20000: a quick smoke run)")
    parser.add_argument("--levels-per-side", type=float, default=20, help="mean level changes per side and diff")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="write the data and the book here and keep them (an empty folder)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of build and baseline (best is kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-book-") as temp:
        root = args.keep or Path(temp)
        if root.exists() and any(root.iterdir()):
            sys.exit(f"--keep {root} is not empty: give an empty or new folder")
        run(root, args)


def run(root: Path, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    walk = write_day(root, args.diffs, args.levels_per_side, args.seed)
    generated = time.perf_counter() - started
    size_mb = sum(path.stat().st_size for path in root.rglob("*.parquet")) / 1e6
    generated_rss = peak_rss_mb()
    print(
        f"synthetic {SYMBOL} {DAY}: {walk.diffs:,} diffs, {walk.level_updates:,} level updates "
        f"({walk.level_updates / walk.diffs:.1f} per diff, {walk.deletions / walk.level_updates:.0%} qty 0), "
        f"{PARTS} parts, {size_mb:.0f} MB; generated + written in {generated:.1f} s (not counted)",
        flush=True,
    )
    build_s = write_s = float("inf")
    for _ in range(args.rounds):
        build, write, book = timed_build(root, now_ms=walk.last_event_ms + 1)
        if build + write < build_s + write_s:
            build_s, write_s = build, write
    built_rss = peak_rss_mb()
    levels = baseline_levels(root)
    baseline_s = min(dict_replay_seconds(levels) for _ in range(args.rounds))
    total_s = build_s + write_s
    print(f"build_book (read + replay + tables) : {build_s:6.2f} s")
    print(f"write_book (3 kinds)                : {write_s:6.2f} s")
    print(
        f"total                               : {total_s:6.2f} s | goal <= 60 s: {'met' if total_s <= 60 else 'MISSED'}"
    )
    print(
        f"baseline dict replay                : {baseline_s:6.2f} s (set/pop of every level into one dict per side, "
        "levels already in memory as Python lists of ints; no reading, dedup, sorted prices, top levels, OFI, "
        "checks, second/minute records, tables or writing)"
    )
    print(f"ratio total / baseline              : {total_s / baseline_s:6.1f}x")
    print(
        f"peak RSS                            : {built_rss:6.0f} MB after build (generation {generated_rss:.0f} MB; "
        f"{peak_rss_mb():.0f} MB with the baseline's lists)"
    )
    report, sane = sanity(book)
    print(report)
    if not sane:
        sys.exit(1)


def sanity(book: BookDay) -> tuple[str, bool]:
    """Valid share, crossed books and the book's size at the end; whether the book was valid (one interval, from the
    snapshot to the data's end, covering >= 99.9 % of the day so far) and never crossed."""
    stats = book.stats
    ends = ", ".join(f"{row['start']}->{row['end']}" for row in book.validity.select(["start", "end"]).to_pylist())
    valid = book.checkpoints.filter(book.checkpoints.column("valid"))
    bids, asks = (len(valid.column(side)[-1].values) if valid.num_rows else 0 for side in ("bids", "asks"))
    sane = stats.crossed == 0 and book.valid_share >= 0.999 and book.validity.num_rows == 1
    return (
        f"sanity {'ok' if sane else 'FAILED'}: valid share {book.valid_share:.5f}, crossed {stats.crossed}, "
        f"applied {stats.applied:,} of {stats.diffs:,} diffs, intervals [{ends}], "
        f"book at the last valid checkpoint {bids:,} bids / {asks:,} asks",
        sane,
    )


if __name__ == "__main__":
    main()

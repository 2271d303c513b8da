"""The validated book against the simulator's true book: a collector records a simulated market while faults are
injected; after compaction the book is rebuilt day by day, and after every diff applied inside a valid interval its
top 20 levels per side equal the simulator's (``true_book``, the ``GET /admin/book`` answer). Each fault ends a valid
interval with what the ledger recorded about it, and a fresh snapshot starts the next; UTC midnight does not."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from harvest_pipeline.book import build_book, write_book
from harvest_pipeline.book.replay import replay_day
from harvest_pipeline.book.sources import read_day_inputs
from harvest_pipeline.book.state import Book, BookSide
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.schema import BOOK_DEPTH
from tests.collector.harness import collect_in_process, records_of
from tests.collector.small_fs import Ballast, tmpfs
from tests.e2e.healing import compact_and_certify

SYMBOL = "BTCUSDT"
DEPTH = "btcusdt@depth@100ms"
MiB = 1024 * 1024
UNIT = Decimal(10) ** -8


def levels(side: BookSide) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p) * UNIT, Decimal(side.sizes[p]) * UNIT) for p in side.top_prices(BOOK_DEPTH)]


def wire_levels(levels: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(price), Decimal(qty)) for price, qty in levels]


def record(root: Path, scenario, clock_offset_ms: int = 0, market: str = "usdm", symbol: str = SYMBOL, **settings: Any):
    """Record ``scenario`` on ``market``; returns the simulator (stopped, its true book still answers) and the sealed
    records."""
    running: list[Any] = []

    async def keep_simulator(sim, service):
        running.append(sim)
        await scenario(sim, service)

    records, accounting = collect_in_process(
        root,
        keep_simulator,
        symbols=(symbol,),
        clock=lambda: time.time_ns() + clock_offset_ms * 1_000_000,
        simulator_settings={"clock_offset_ms": clock_offset_ms, "market": market},
        market=market,
        **settings,
    )
    compact_and_certify(root / "data", symbol, market)
    return running[0], records, accounting


def rebuild_and_compare(
    root: Path, sim, skip_first_day: bool = False, market: str = "usdm", symbol: str = SYMBOL
) -> dict[dt.date, list[dict[str, Any]]]:
    """Build each recorded day of ``symbol`` on ``market`` in order (the first one not at all when
    ``skip_first_day``) and compare every valid book state with the truth; returns the intervals."""
    parquet = DataPaths.from_root(root / "data").market_parquet(market)
    days = sorted(dt.date.fromisoformat(p.name.removeprefix("date=")) for p in parquet.glob("date=*"))
    intervals, compared = {}, 0
    for day in days[1:] if skip_first_day else days:
        states: list[tuple[int, list, list]] = []

        def observe(book: Book, states=states) -> None:
            states.append((book.update_id, levels(book.bids), levels(book.asks)))

        replay_day(read_day_inputs(parquet, day, symbol), observe=observe)
        for update_id, bids, asks in states:
            truth = sim.true_book(symbol, update_id, BOOK_DEPTH)
            assert truth["update_id"] == update_id, "every diff ends at a boundary of the true book"
            assert (bids, asks) == (wire_levels(truth["bids"]), wire_levels(truth["asks"])), f"book at u={update_id}"
        compared += len(states)
        built = build_book(parquet, day, symbol)
        write_book(built, parquet)
        assert built.stats.crossed == 0
        assert built.ticker_agreement is None or built.ticker_agreement == 1.0, built.stats.ticker_disagreements
        for row in built.seconds.filter(built.seconds.column("valid")).to_pylist():
            truth = sim.true_book(symbol, row["last_update_id"], BOOK_DEPTH)
            assert [(p, q) for p, q in zip(row["bid_prices"], row["bid_qtys"], strict=True)] == wire_levels(
                truth["bids"]
            )
            assert [(p, q) for p, q in zip(row["ask_prices"], row["ask_qtys"], strict=True)] == wire_levels(
                truth["asks"]
            )
        intervals[day] = built.validity.to_pylist()
    assert compared > 20, f"only {compared} book states compared"
    return intervals


def assert_each_break_restarts_from_a_snapshot(intervals: list[dict[str, Any]], breaks: int) -> list[dict]:
    ended = [interval for interval in intervals if interval["end"] == "break"]
    assert len(ended) == breaks, intervals
    for before, after in zip(intervals, intervals[1:], strict=False):
        assert after["start"] == "snapshot" and after["snapshot_update_id"] >= before["last_update_id"]
        assert after["from_time_ms"] >= before["to_time_ms"]
    assert intervals[-1]["end"] == "end_of_data"
    return ended


def test_break_pu_and_a_dropped_connection_each_end_a_valid_interval_and_a_snapshot_starts_the_next(tmp_path):
    async def scenario(sim, service):
        await asyncio.sleep(2.0)
        await sim.apply_fault({"fault": "break_pu", "symbol": SYMBOL})
        await asyncio.sleep(2.0)
        [public] = [c for c in sim.connection_list() if DEPTH in c["streams"]]
        await sim.apply_fault({"fault": "drop_connection", "connection": public["id"]})
        await asyncio.sleep(2.5)

    sim, records, _ = record(tmp_path, scenario, backoff_initial_s=0.3)

    [(_, intervals)] = rebuild_and_compare(tmp_path, sim).items()
    pu_break, dropped = assert_each_break_restarts_from_a_snapshot(intervals, breaks=2)
    assert records_of(records, "disconnect"), "the connection was dropped"
    assert "pu" in pu_break["end_reason"] and dropped["end_reason"] != "unexplained", intervals


def test_a_write_loss_ends_a_valid_interval_with_its_reason_and_a_snapshot_starts_the_next(tmp_path):
    with tmpfs(tmp_path / "disk", 24 * MiB) as disk:
        ballast = Ballast(disk)

        async def scenario(sim, service):
            await asyncio.sleep(1.5)
            ballast.fill(0)
            await asyncio.sleep(2.5)
            ballast.remove()
            await asyncio.sleep(3.0)

        sim, records, _ = record(
            disk, scenario, rate=5.0, queue_max_bytes=MiB // 2, write_retry_max_s=0.2, disk_free_warn_bytes=MiB
        )
        [(_, intervals)] = rebuild_and_compare(disk, sim).items()

    assert records_of(records, "write_loss", DEPTH), "the full disk cost depth frames"
    [loss] = assert_each_break_restarts_from_a_snapshot(intervals, breaks=1)
    assert loss["end_reason"].startswith("write loss"), loss


@pytest.mark.parametrize(("market", "symbol"), [("spot", "BTCUSDT"), ("coinm", "BTCUSD_PERP")])
def test_on_spot_and_coin_m_a_broken_depth_chain_ends_a_valid_interval_and_every_valid_book_is_the_true_one(
    tmp_path, market, symbol
):
    """Spot's diffs name no ``pu``: the chain is ``U`` = previous ``u`` + 1, which compaction stores as ``U - 1``; the
    book built from them must equal the simulator's after every diff, and a skipped diff must end the interval."""

    async def scenario(sim, service):
        await asyncio.sleep(2.5)
        await sim.apply_fault({"fault": "break_pu", "symbol": symbol})
        await asyncio.sleep(3.0)

    sim, records, _ = record(tmp_path, scenario, market=market, symbol=symbol)

    [(_, intervals)] = rebuild_and_compare(tmp_path, sim, market=market, symbol=symbol).items()
    [broken] = assert_each_break_restarts_from_a_snapshot(intervals, breaks=1)
    chain = "U chain break" if market == "spot" else "pu chain break"
    assert chain in broken["end_reason"], broken
    assert records_of(records, "gap", f"{symbol.lower()}@depth@100ms"), "the collector recorded the break"


def offset_to_midnight(seconds_before: float) -> tuple[int, int]:
    """The exchange clock offset that puts the next UTC midnight ``seconds_before`` from now, and that midnight."""
    now_ms = time.time_ns() // 1_000_000
    next_midnight = (now_ms // 86_400_000 + 1) * 86_400_000
    return next_midnight - now_ms - round(seconds_before * 1000), next_midnight


def test_utc_midnight_inside_a_valid_interval_does_not_end_it(tmp_path):
    offset, next_midnight = offset_to_midnight(2.5)

    async def scenario(sim, service):
        await asyncio.sleep(5.0)

    sim, _, _ = record(tmp_path, scenario, clock_offset_ms=offset, segment_max_age_s=1.0)

    intervals = rebuild_and_compare(tmp_path, sim)
    assert len(intervals) == 2, "the recording spans two UTC days"
    (before, [*before_intervals, last]), (after, [first, *_]) = sorted(intervals.items())
    assert (last["end"], last["to_time_ms"]) == ("continues", next_midnight)
    assert (first["start"], first["from_time_ms"]) == ("carried", next_midnight)
    assert first["first_update_id"] == last["last_update_id"]


def test_a_day_that_cannot_be_carried_becomes_valid_at_the_next_periodic_snapshot(tmp_path):
    offset, next_midnight = offset_to_midnight(1.0)

    async def scenario(sim, service):
        await asyncio.sleep(5.0)

    sim, records, _ = record(tmp_path, scenario, clock_offset_ms=offset, segment_max_age_s=1.0, snapshot_refresh_s=2.0)

    [(_, [first, *_])] = rebuild_and_compare(tmp_path, sim, skip_first_day=True).items()
    periodic = [r for r in records_of(records, "snapshot") if r["reason"] == "periodic refresh"]
    assert periodic, "the collector refreshed its snapshot without any break"
    assert first["start"] == "snapshot" and first["from_time_ms"] > next_midnight, "no day before to carry from"

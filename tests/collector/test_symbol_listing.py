"""``--symbols all`` / ``top:N`` follow the exchange while the collector runs: a listing is subscribed, snapshotted,
polled and compacted without a restart, a delisting closes its streams without a watchdog, and the symbols that stay are
recorded throughout with every frame the exchange sent them stored (no reconnect, no duplicate, no loss)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import duckdb

from harvest_pipeline.collector.service import CollectorService
from harvest_pipeline.compaction import compact_segment, reconcile
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import list_sealed_segments
from harvest_pipeline.simulator import Simulator
from tests.collector.harness import FAST_SETTINGS, collect_in_process, records_of, sent_per_stream
from tests.collector.sealed import frames_per_stream

LISTED = ("BTCUSDT", "ETHUSDT")
NEW = "DOGEUSDT"
KINDS = ("aggTrade", "depth@100ms", "bookTicker")
SELECTING = {
    **FAST_SETTINGS,
    "stream_kinds": KINDS,
    "symbols_refresh_s": 0.5,
    "watchdog_s": 3.0,
    "open_interest_interval_s": 1.5,
}


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Wait (on the event loop) until ``check`` holds, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.05)


def select_in_process(
    tmp_path: Path,
    symbols: tuple[str, ...],
    scenario: Callable[[Simulator, CollectorService], Awaitable[None]],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A collector with ``symbols`` (selectors) against a simulator listing ``LISTED``: once the selection resolved,
    run ``scenario``; the sealed records and the final accounting (``harness.collect_in_process``)."""

    async def resolved_then(sim: Simulator, service: CollectorService) -> None:
        await eventually(lambda: service.symbols == LISTED, "the listed symbols resolved")
        await scenario(sim, service)

    return collect_in_process(tmp_path, resolved_then, symbols=symbols, rate=2.0, simulator_symbols=LISTED, **SELECTING)


def streams_of(symbol: str) -> list[str]:
    return [f"{symbol.lower()}@{kind}" for kind in KINDS]


def test_a_listing_is_recorded_without_a_restart_and_a_delisting_closes_only_its_streams(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def list_then_delist(sim: Simulator, service: CollectorService) -> None:
        await asyncio.sleep(1.0)
        await sim.set_listing(NEW, "TRADING", events_per_second=200.0)
        await eventually(
            lambda: all(service.intake.streams.get(s) and service.intake.streams[s].frames for s in streams_of(NEW)),
            f"frames of every {NEW} stream",
        )
        await eventually(lambda: NEW in service.open_interest.polls and service.open_interest.polls[NEW].stored, "OI")
        seen["symbols while listed"] = service.symbols
        await asyncio.sleep(1.0)
        await sim.set_listing(NEW, "SETTLING")
        await eventually(lambda: not any(s in shard.streams for shard in service.shards for s in streams_of(NEW)), "")
        healthy, report = service.health()
        seen["health after"] = report
        await asyncio.sleep(1.0)

    records, accounting = select_in_process(tmp_path, ("all",), list_then_delist)

    assert seen["symbols while listed"] == ("BTCUSDT", NEW, "ETHUSDT"), "explicit ones first, then by name"
    connects = records_of(records, "connect")
    added = [r for r in connects if set(r["streams"]) & set(streams_of(NEW))]
    assert len(added) == 2 and {r["route"] for r in added} == {"market", "public"}, "one new connection per route"
    assert sorted(s for r in added for s in r["streams"]) == sorted(streams_of(NEW)), "carrying only the new streams"
    assert len(connects) == 4, "the listed symbols' two connections were never replaced"
    closed = [r for r in records_of(records, "disconnect") if r["c"] in {a["c"] for a in added}]
    assert [r["reason"] for r in closed] == [f"closed: symbols removed (-{NEW})"] * 2

    stored, sent = frames_per_stream(records), sent_per_stream(accounting)
    for stream in [*streams_of(NEW), *(s for symbol in LISTED for s in streams_of(symbol))]:
        assert stored[stream] == sent[stream] > 0, f"{stream}: every frame sent is stored, once"
    assert not records_of(records, "bad_frame") and not records_of(records, "watchdog")
    assert not records_of(records, "gap"), "no reconnect, no id jump"
    assert [r["s"] for r in records_of(records, "snapshot") if NEW.lower() in r["s"]], f"{NEW} book snapshotted"
    assert [r for r in records_of(records, "open_interest") if r["s"].startswith(NEW.lower())], f"{NEW} OI polled"

    paths = DataPaths.from_root(tmp_path / "data")
    reports = [compact_segment(segment, paths) for segment in list_sealed_segments(paths.sealed_segments)]
    assert all(reconcile(r).passed for r in reports), [reconcile(r).detail for r in reports]
    for kind, stream, column in (
        ("prices", "aggTrade", "agg_trade_id"),
        ("orderbook", "depth@100ms", "final_update_id"),
        ("bookticker", "bookTicker", "update_id"),
    ):
        files = f"{paths.market_parquet()}/date=*/symbol={NEW}/kind={kind}/*.parquet"
        [(distinct,)] = duckdb.sql(f"SELECT count(DISTINCT {column}) FROM read_parquet('{files}')").fetchall()
        sent_frames = accounting["streams"][f"{NEW.lower()}@{stream}"]["frames"]
        assert distinct == sent_frames > 0, f"{NEW} {kind}: compacted rows = frames the exchange sent"

    report = seen["health after"]
    assert not set(streams_of(NEW)) & set(report["streams"]), "a removed stream is not reported (never silent)"
    assert report["symbols"]["recorded"] == list(LISTED) and report["symbols"]["selection"] == ["all"]
    assert NEW not in report["books_synced"] and NEW not in report["open_interest"]["symbols"]


ID_FIELD = {"aggTrade": "a", "depth@100ms": "u", "bookTicker": "u"}


def distinct_ids(records: list[dict[str, Any]], stream: str) -> int:
    """Exchange ids of a stream's stored frames, each once (the overlap of a replacement stores some twice)."""
    key = ID_FIELD[stream.partition("@")[2]]
    return len({r["f"]["data"][key] for r in records_of(records, "frame", stream)})


def test_a_delisting_with_a_listing_hands_the_shared_connections_over_without_losing_a_frame(tmp_path: Path) -> None:
    async def swap(sim: Simulator, service: CollectorService) -> None:
        await asyncio.sleep(1.0)
        await sim.set_listing("ETHUSDT", "SETTLING")
        await sim.set_listing(NEW, "TRADING", events_per_second=200.0)
        await eventually(lambda: service.symbols == ("BTCUSDT", NEW), "the swap")
        await eventually(lambda: len(service.shards) == 2, "the replaced connections closed")
        await asyncio.sleep(1.5)

    records, accounting = select_in_process(tmp_path, ("all",), swap)

    connects = records_of(records, "connect")
    assert len(connects) == 4, "two at start, two successors"
    first, successors = connects[:2], connects[2:]
    assert sorted(s for r in successors for s in r["streams"]) == sorted(streams_of("BTCUSDT") + streams_of(NEW))
    ended = {r["c"]: r["reason"] for r in records_of(records, "disconnect")}
    assert [ended[r["c"]] for r in first] == [f"replaced: symbols changed (+{NEW} -ETHUSDT)"] * 2
    sent, stored = sent_per_stream(accounting), frames_per_stream(records)
    for stream in streams_of("BTCUSDT") + streams_of("ETHUSDT") + streams_of(NEW):
        assert stored[stream] == sent[stream] > 0, f"{stream}: every frame sent on every connection is stored"
    btc_trades = {r["f"]["data"]["a"] for r in records_of(records, "frame", "btcusdt@aggTrade")}
    assert len(btc_trades) == max(btc_trades) - min(btc_trades) + 1, "the trades that stayed have no hole"
    overlap = sum(stored[s] - distinct_ids(records, s) for s in streams_of("BTCUSDT"))
    assert overlap > 0, "both connections carried BTCUSDT for a moment: duplicates, removed downstream by id"
    assert not records_of(records, "watchdog") and not records_of(records, "bad_frame")
    assert not records_of(records, "gap"), "no id jump on the streams handed over"


def test_a_shutdown_during_a_hand_over_closes_every_connection_and_exits_cleanly(tmp_path: Path) -> None:
    async def stop_mid_hand_over(sim: Simulator, service: CollectorService) -> None:
        await sim.set_listing("ETHUSDT", "SETTLING")
        await eventually(lambda: len(service.shards) > 2, "the successors started")

    records, _ = select_in_process(tmp_path, ("all",), stop_mid_hand_over)

    connected = {r["c"] for r in records_of(records, "connect")}
    assert {r["c"] for r in records_of(records, "disconnect")} >= connected, "every connection's end is recorded"

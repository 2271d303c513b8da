"""The true book history: answers equal a book rebuilt from the same diffs, in memory and over the admin API."""

from __future__ import annotations

import argparse
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from harvest_pipeline.simulator.book_history import BookAt, BookHistory
from harvest_pipeline.simulator.command import config_from_args, register
from harvest_pipeline.simulator.instruments import instrument
from harvest_pipeline.simulator.market import SymbolMarket
from tests.simulator.test_replay import write_segment
from tests.simulator.ws_clients import collect, http_get, payloads, run

DIFF_MS = 100
DIFF_STREAM = "btcusdt@depth@100ms"

Levels = list[tuple[int, int]]


def _sorted_side(side: dict[int, int], is_bid: bool) -> Levels:
    return sorted(side.items(), reverse=is_bid)


def drive_market(diffs: int, checkpoint_every: int, horizon_s: float = 3600.0) -> tuple[BookHistory, dict[int, BookAt]]:
    """Record ``diffs`` diffs of a seeded BTCUSDT market, ``DIFF_MS`` apart; also return the book after each
    boundary, rebuilt independently by applying the same diffs to a copy of the initial book."""
    market = SymbolMarket(instrument("BTCUSDT"), seed=3)
    history = BookHistory(market.update_id, market.bids.lots, market.asks.lots, 0, horizon_s, checkpoint_every)
    bids, asks = dict(market.bids.lots), dict(market.asks.lots)
    expected = {market.update_id: BookAt(market.update_id, _sorted_side(bids, True), _sorted_side(asks, False))}
    recorded = 0
    while recorded < diffs:
        market.step(market.event_count(DIFF_MS / 1000, 1.0))
        diff = market.take_diff()
        if diff is None:
            continue
        recorded += 1
        history.record(diff, recorded * DIFF_MS, market.bids.lots, market.asks.lots)
        for side, levels in ((bids, diff.bids), (asks, diff.asks)):
            side.update(levels)
            for tick in [tick for tick, lots in levels if lots == 0]:
                del side[tick]
        expected[diff.last_update_id] = BookAt(diff.last_update_id, _sorted_side(bids, True), _sorted_side(asks, False))
    assert (bids, asks) == (market.bids.lots, market.asks.lots), "the independent book follows the market"
    return history, expected


def test_book_at_every_boundary_equals_the_book_rebuilt_from_the_same_diffs() -> None:
    history, expected = drive_market(40, checkpoint_every=5)
    boundaries = sorted(expected)
    for boundary in boundaries:
        assert history.book_at(boundary) == expected[boundary]
    for boundary, following in zip(boundaries, boundaries[1:], strict=False):
        if following > boundary + 1:
            assert history.book_at(following - 1) == expected[boundary], "inside a window: the previous boundary"


def test_checkpoints_are_kept_every_k_diffs_starting_with_the_initial_book() -> None:
    history, expected = drive_market(40, checkpoint_every=5)
    boundaries = sorted(expected)
    assert history.checkpoint_update_ids == [boundaries[0], *boundaries[6::6]]
    assert history.oldest_update_id == boundaries[0] and history.latest_update_id == boundaries[-1]


def test_limit_cuts_both_sides_and_newer_ids_answer_the_latest_boundary() -> None:
    history, expected = drive_market(12, checkpoint_every=5)
    latest = max(expected)
    answer = history.book_at(latest + 10**6, limit=20)
    assert answer == BookAt(latest, expected[latest].bids[:20], expected[latest].asks[:20])
    assert len(answer.bids) == len(answer.asks) == 20


def test_the_horizon_forgets_old_checkpoints_but_keeps_every_boundary_within_it() -> None:
    diffs, checkpoint_every, horizon_s = 100, 2, 1.0
    history, expected = drive_market(diffs, checkpoint_every, horizon_s)
    boundaries = sorted(expected)  # boundary n was recorded at n * DIFF_MS
    within = [b for n, b in enumerate(boundaries) if n * DIFF_MS >= diffs * DIFF_MS - horizon_s * 1000]
    for boundary in within:
        assert history.book_at(boundary) == expected[boundary]
    oldest = history.oldest_update_id
    assert boundaries[0] < oldest <= within[0]
    assert len(history.checkpoint_update_ids) <= horizon_s * 1000 / DIFF_MS / (checkpoint_every + 1) + 2
    with pytest.raises(LookupError, match=rf"older than the kept book history: boundaries {oldest}\.\.") as error:
        history.book_at(oldest - 1)
    assert f"{boundaries[-1]} are kept (horizon 1 s)" in str(error.value)


def test_an_id_before_the_initial_book_is_an_error() -> None:
    history, expected = drive_market(3, checkpoint_every=5)
    initial = min(expected)
    assert history.book_at(initial) == expected[initial]
    with pytest.raises(LookupError, match="older than the kept book history"):
        history.book_at(initial - 1)


def test_book_history_flag_reaches_the_settings() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert config_from_args(parser.parse_args(["simulate", "--book-history-s", "30"])).book_history_s == 30.0
    assert config_from_args(parser.parse_args(["simulate"])).book_history_s == 600.0
    with pytest.raises(ValueError, match="book_history_s must be > 0"):
        SimulatorConfig(book_history_s=0)


# -------------------------------------------------------------------------------------------------------------------
# Against the running simulator: a Binance-style local book from the public diff stream and a REST snapshot


def _apply(side: dict[str, str], levels: list[list[str]]) -> None:
    for price, qty in levels:
        if Decimal(qty) == 0:
            side.pop(price, None)
        else:
            side[price] = qty


def _best_first(side: dict[str, str], is_bid: bool, limit: int | None = None) -> list[list[str]]:
    prices = sorted(side, key=Decimal, reverse=is_bid)[:limit]
    return [[price, side[price]] for price in prices]


def follow_diffs(snapshot: dict[str, Any], diffs: list[dict[str, Any]]) -> dict[int, tuple[list[list[str]], ...]]:
    """Binance's sync procedure: the top 20 of the local book after each applied diff, by the diff's ``u``."""
    last_update_id = snapshot["lastUpdateId"]
    bids, asks = dict(snapshot["bids"]), dict(snapshot["asks"])
    previous_u: int | None = None
    tops: dict[int, tuple[list[list[str]], ...]] = {}
    for diff in diffs:
        if diff["u"] < last_update_id:
            continue
        if previous_u is None:
            assert diff["U"] <= last_update_id <= diff["u"], "the first applied diff straddles the snapshot"
        else:
            assert diff["pu"] == previous_u, "the diff chain is unbroken"
        _apply(bids, diff["b"])
        _apply(asks, diff["a"])
        previous_u = diff["u"]
        tops[diff["u"]] = (_best_first(bids, True, 20), _best_first(asks, False, 20))
    return tops


async def true_book(admin_base: str, update_id: int, limit: int | None = 20) -> dict[str, Any]:
    limit_part = "" if limit is None else f"&limit={limit}"
    status, _, body = await http_get(f"{admin_base}/admin/book?symbol=BTCUSDT&update_id={update_id}{limit_part}")
    assert status == 200, body
    return body


def test_admin_book_top_20_equals_a_local_book_kept_from_the_public_diff_stream() -> None:
    async def scenario() -> None:
        config = SimulatorConfig(symbols=("BTCUSDT",), seed=5, rate=3.0)
        async with running_simulator(config) as sim, connect(f"{sim.ws_base}/public/ws/{DIFF_STREAM}") as ws:
            first = await ws.recv()
            _, _, snapshot = await http_get(f"{sim.rest_base}/fapi/v1/depth?symbol=BTCUSDT&limit=1000")
            diffs = payloads([first, *await collect(ws, 1.0)])
            tops = follow_diffs(snapshot, diffs)
            answers = {u: await true_book(sim.admin_base, u) for u in tops}
            applied = [diff for diff in diffs if diff["u"] in tops]
            inside = next(b for b in applied[1:] if b["u"] - 1 >= b["U"])
            inside_answer = await true_book(sim.admin_base, inside["u"] - 1)
        assert len(tops) >= 5
        for u, (bids, asks) in tops.items():
            assert answers[u] == {
                "symbol": "BTCUSDT",
                "update_id": u,
                "requested_update_id": u,
                "bids": bids,
                "asks": asks,
            }
        assert inside_answer["update_id"] == inside["pu"] and inside_answer["requested_update_id"] == inside["u"] - 1
        assert (inside_answer["bids"], inside_answer["asks"]) == tops[inside["pu"]]

    run(scenario())


def test_the_true_book_includes_the_diff_a_break_pu_fault_suppressed() -> None:
    async def scenario() -> None:
        config = SimulatorConfig(symbols=("BTCUSDT",), seed=9, rate=3.0)
        async with running_simulator(config) as sim, connect(f"{sim.ws_base}/public/ws/{DIFF_STREAM}") as ws:
            diffs = [orjson.loads(await ws.recv())]
            await sim.apply_fault({"fault": "break_pu", "symbol": "BTCUSDT"})
            diffs += payloads(await collect(ws, 0.6))
            before, after = next((a, b) for a, b in zip(diffs, diffs[1:], strict=False) if b["pu"] != a["u"])
            published = await true_book(sim.admin_base, before["u"], limit=None)
            suppressed = await true_book(sim.admin_base, after["pu"], limit=None)
            following = await true_book(sim.admin_base, after["u"], limit=None)
        assert suppressed["update_id"] == after["pu"] > before["u"], "the suppressed diff's boundary is recorded"
        assert (suppressed["bids"], suppressed["asks"]) != (published["bids"], published["asks"])
        bids, asks = dict(suppressed["bids"]), dict(suppressed["asks"])
        _apply(bids, after["b"])
        _apply(asks, after["a"])
        assert [_best_first(bids, True), _best_first(asks, False)] == [following["bids"], following["asks"]]

    run(scenario())


def test_admin_book_rejects_bad_requests_with_a_message() -> None:
    async def scenario() -> list[tuple[int, Any]]:
        async with running_simulator(SimulatorConfig(symbols=("BTCUSDT",), seed=2)) as sim:
            base = f"{sim.admin_base}/admin/book"
            queries = (
                "symbol=BTCUSDT",
                "symbol=BTCUSDT&update_id=abc",
                "symbol=BTCUSDT&update_id=5&limit=0",
                "update_id=5",
                "symbol=NOPEUSDT&update_id=5",
                "symbol=BTCUSDT&update_id=5",
            )
            answers = []
            for query in queries:
                status, _, body = await http_get(f"{base}?{query}")
                answers.append((status, body["error"]))
            return answers

    missing, not_int, bad_limit, no_symbol, unknown, too_old = run(scenario())
    assert missing == (400, "parameter 'update_id' is required")
    assert not_int == (400, "parameter 'update_id' must be an integer, got 'abc'")
    assert bad_limit == (400, "parameter 'limit' must be >= 1, got 0")
    assert no_symbol == (400, "parameter 'symbol' is required")
    assert unknown[0] == 404 and "'NOPEUSDT' is not simulated" in unknown[1]
    assert too_old[0] == 404 and "update id 5 is older than the kept book history" in too_old[1]


def test_a_replay_has_no_true_book(tmp_path: Path) -> None:
    path = write_segment(tmp_path)

    async def scenario() -> None:
        async with running_simulator(SimulatorConfig(symbols=("BTCUSDT",), replay=(path,))) as sim:
            status, _, body = await http_get(f"{sim.admin_base}/admin/book?symbol=BTCUSDT&update_id=70")
            with pytest.raises(LookupError, match="a replay has no market model"):
                sim.true_book("BTCUSDT", 70)
        assert status == 404 and "a replay has no market model" in body["error"]

    run(scenario())

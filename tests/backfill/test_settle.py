"""What one aggTrades answer does to the holes asked for (the logic the collector and the healing of past days share),
on hand-made answers."""

from __future__ import annotations

from typing import Any

import orjson

from harvest_pipeline.backfill.holes import Hole, not_served_reason
from harvest_pipeline.backfill.rest import PageAnswer, read_trades
from harvest_pipeline.backfill.settle import NO_TRADE_PROBLEM, BackfillRecords, gave_up_reason
from harvest_pipeline.segments import parse_record

STREAM = "btcusdt@aggTrade"


def answer(ids: list[int], status: int = 200, retry_after_s: float | None = None) -> PageAnswer:
    """An answer of ``status`` whose body holds trades with ``ids`` (a rejection's body is an error object)."""
    if status != 200:
        body = b'{"code":-1003,"msg":"Too many requests"}'
        return PageAnswer(ids[0], 1, 2, status, body, retry_after_s, 40, None, f"HTTP {status}")
    trade = {"p": "100.0", "q": "1", "T": 1_700_000_000_000, "m": True}
    body = orjson.dumps([{"a": i, "f": i, "l": i, **trade} for i in ids])
    trades, problem = read_trades(body)
    return PageAnswer(ids[0] if ids else 0, 1, 2, status, body, None, 40, trades, problem)


def records_of(lines: list[Any]) -> list[dict[str, Any]]:
    return [parse_record(line.data) for line in lines]


def holes(*ranges: tuple[int, int]) -> list[Hole]:
    return [Hole("BTCUSDT", first, last, f"hole {first}") for first, last in ranges]


def test_one_page_settles_every_hole_it_reaches_and_moves_the_one_it_ends_inside() -> None:
    asked = holes((10, 12), (15, 15), (20, 30), (40, 41))
    page = answer([10, 12, 13, 14, 15, 16, 20, 21, 22, 23, 24, 25])
    settlement = BackfillRecords("b-heal", lambda: 7).settle(asked, page, STREAM)
    request, *rest = records_of(settlement.lines)
    trades = [r for r in rest if r["k"] == "rest_trade"]
    declarations = [r for r in rest if r["k"] == "backfill"]
    assert (request["outcome"], request["from_id"], request["to_id"], request["count"]) == ("fetched", 10, 30, 9)
    assert request["cause"] == "hole 10; hole 15; hole 20"
    assert [t["f"]["a"] for t in trades] == [10, 12, 15, 20, 21, 22, 23, 24, 25]
    assert {t["r"] for t in trades} == {request["n"]}
    assert [(d["outcome"], d["from_id"], d["to_id"], d["reason"], d["t"]) for d in declarations] == [
        ("declared", 11, 11, not_served_reason(11, 11), 7)
    ]
    assert settlement.settled == asked[:2]
    assert (asked[2].first_id, asked[3].first_id) == (26, 40), "the third hole continues after the page"
    assert (settlement.label, settlement.stored, settlement.retry, settlement.pause_s) == ("ok", 9, None, None)


def test_a_rejection_pauses_rest_for_its_retry_after_and_leaves_the_hole_as_it_was() -> None:
    asked = holes((10, 20))
    settlement = BackfillRecords("b-heal", lambda: 7).settle(asked, answer([10], 429, retry_after_s=12.0), STREAM)
    [request] = records_of(settlement.lines)
    assert (request["status"], request["count"], request["weight"]) == (429, 0, 20)
    assert (settlement.label, settlement.pause_s, settlement.settled, settlement.retry) == ("http_429", 12.0, [], None)
    assert asked[0].first_id == 10


def test_an_unreadable_answer_is_kept_as_evidence_and_the_hole_retried() -> None:
    asked = holes((10, 20))
    body = b'{"not": "a list"}'
    unreadable = PageAnswer(10, 1, 2, 200, body, None, 20, *read_trades(body))
    settlement = BackfillRecords("b-heal", lambda: 7).settle(asked, unreadable, STREAM)
    request, evidence = records_of(settlement.lines)
    assert request["problem"] == "not a JSON array but dict"
    assert evidence["k"] == "bad_frame" and evidence["n"] == request["n"]
    assert (settlement.label, settlement.retry, settlement.settled) == ("error", "not a JSON array but dict", [])


def test_an_empty_answer_settles_nothing_and_asks_for_a_retry() -> None:
    asked = holes((10, 20), (22, 23))
    settlement = BackfillRecords("b-heal", lambda: 7).settle(asked, answer([]), STREAM)
    assert (settlement.retry, settlement.settled, settlement.declared) == (NO_TRADE_PROBLEM, [], [])
    assert [hole.first_id for hole in asked] == [10, 22]


def test_declarations_carry_the_stamp_asked_for_and_giving_up_names_the_attempts() -> None:
    records = BackfillRecords("b-heal", lambda: 7)
    asked = holes((10, 12))
    settlement = records.settle(asked, answer([13]), STREAM, declared_ns=5)
    [declaration] = [r for r in records_of(settlement.lines) if r["k"] == "backfill" and r["outcome"] == "declared"]
    assert (declaration["t"], declaration["from_id"], declaration["to_id"]) == (5, 10, 12)
    hole = holes((30, 40))[0]
    hole.attempts = 5
    line, reason = records.give_up(hole, STREAM, "HTTP 503", declared_ns=9)
    assert reason == gave_up_reason(5, "HTTP 503") == "REST backfill gave up after 5 attempts: HTTP 503"
    assert (parse_record(line.data)["t"], parse_record(line.data)["reason"]) == (9, reason)

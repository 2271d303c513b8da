"""Open interest is polled per symbol on a spread schedule, each answer stored verbatim; a failed poll costs only
that sample and never the collector."""

import asyncio
import json
import time
import urllib.request

from aiohttp import web

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.open_interest import poll_spacing_s
from harvest_pipeline.collector.service import CollectorService
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import parse_record
from harvest_pipeline.segments.records import KIND_OPEN_INTEREST, RECORD_KINDS, encode_open_interest
from tests.collector.harness import FAST_SETTINGS, collect_in_process, records_of
from tests.collector.sealed import load_sealed_records

BODY = b'{"symbol":"BTCUSDT","openInterest":"10659.509","time":1764000000000}'


def test_an_answer_is_stored_verbatim_with_the_documented_key_order():
    line = encode_open_interest(1_764_000_000_123_456_789, "ab12cd34-open-interest", 7, "BTCUSDT", BODY)
    assert line.data == (
        b'{"t":1764000000123456789,"c":"ab12cd34-open-interest","n":7,"k":"open_interest",'
        b'"s":"btcusdt@openInterest","symbol":"BTCUSDT","f":' + BODY + b"}\n"
    )
    assert (line.kind, line.stream) == (KIND_OPEN_INTEREST, "btcusdt@openInterest")
    assert KIND_OPEN_INTEREST in RECORD_KINDS
    record = parse_record(line.data)
    assert list(record) == ["t", "c", "n", "k", "s", "symbol", "f"]
    assert record["f"]["openInterest"] == "10659.509" and record["f"]["time"] == 1764000000000


def test_an_answer_that_cannot_be_embedded_becomes_a_bad_frame_with_the_reason():
    for body, reason in ((b"<html>busy</html>", "frame is not a JSON object"), (b"", "empty frame")):
        line = encode_open_interest(1, "ab-open-interest", 1, "ETHUSDT", body)
        record = parse_record(line.data)
        assert (record["k"], record["s"], record["reason"]) == (
            "bad_frame",
            "ethusdt@openInterest",
            f"open interest: {reason}",
        )


def test_polls_are_spread_over_the_interval_and_held_to_their_weight_share():
    four = CollectorConfig(symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"))
    assert poll_spacing_s(four) == 15.0, "60 s spread over 4 symbols"
    many = CollectorConfig(symbols=tuple(f"S{n:03d}USDT" for n in range(300)))
    assert poll_spacing_s(many) == 0.5, "120 weight/minute (10 % of 1,200) allows one poll every 0.5 s"
    ten = tuple(f"S{n:03d}USDT" for n in range(10))
    small = CollectorConfig(symbols=ten, rest_weight_per_minute=100, open_interest_weight_share=0.05)
    assert poll_spacing_s(small) == 12.0, "5 weight a minute for 10 symbols: the 60 s interval becomes 120 s"


def test_a_bad_body_a_timeout_and_an_http_error_cost_one_sample_each_and_polling_goes_on(tmp_path):
    """Against an exchange whose answers go wrong in turn: ``<html>``, no answer within the timeout, HTTP 500."""
    answers = iter(("html", "hang", "500"))
    requested: list[float] = []

    async def open_interest(request: web.Request) -> web.Response:
        requested.append(time.monotonic())
        assert request.query["symbol"] == "BTCUSDT"
        how = next(answers, "ok")
        if how == "hang":
            await asyncio.sleep(2.0)
        if how == "500":
            return web.Response(status=500, body=b'{"code":-1001,"msg":"Internal error"}')
        body = b"<html>busy</html>" if how == "html" else BODY
        return web.Response(body=body, headers={"X-MBX-USED-WEIGHT-1M": str(len(requested))})

    async def main() -> dict:
        app = web.Application()
        app.router.add_get("/fapi/v1/openInterest", open_interest)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        settings = {**FAST_SETTINGS, "open_interest_interval_s": 0.25, "open_interest_weight_share": 0.5}
        settings["rest_timeout_s"] = 0.5
        config = CollectorConfig(
            ws_base="ws://127.0.0.1:9", rest_base=f"http://127.0.0.1:{port}", stream_kinds=(), **settings
        )
        service = CollectorService(config, DataPaths.from_root(tmp_path))
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        await asyncio.sleep(2.2)
        health = service.health()[1]
        metrics = (await asyncio.to_thread(_get, f"http://127.0.0.1:{service.metrics_port}/metrics")).decode()
        stop.set()
        assert await task == 0
        await runner.cleanup()
        return {"health": health, "metrics": metrics}

    seen = asyncio.run(main())
    records = load_sealed_records(tmp_path / "segments" / "sealed")
    bad = records_of(records, "bad_frame")
    assert [(r["s"], r["reason"]) for r in bad] == [
        ("btcusdt@openInterest", "open interest: frame is not a JSON object")
    ]
    stored = records_of(records, KIND_OPEN_INTEREST)
    assert len(stored) == len(requested) - 3, "every answered poll but the three bad ones is stored"
    assert len(stored) >= 3 and all(r["f"] == json.loads(BODY) for r in stored)
    assert [r["n"] for r in bad + stored] == list(range(1, len(stored) + 2)), "one numbering for all its records"
    polls = seen["health"]["open_interest"]["symbols"]["BTCUSDT"]
    assert polls["failed"] == 3 and polls["last_outcome"] == "ok" and polls["failures_in_a_row"] == 0
    assert seen["health"]["status"] == "ok", "missed samples do not make the collector unhealthy"
    for outcome in ("bad_body", "error", "http_500"):
        assert f'harvest_open_interest_polls_total{{outcome="{outcome}",symbol="BTCUSDT"}} 1.0' in seen["metrics"]
    gaps = [b - a for a, b in zip(requested, requested[1:], strict=False)]
    assert min(gaps) >= 0.2, "a slow answer is never made up for by a burst"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


OI_SETTINGS = {
    "stream_kinds": ("aggTrade",),  # no depth: every REST request of the run is an open-interest poll
    "backfill": False,
    "open_interest_interval_s": 0.5,
    "open_interest_weight_share": 0.5,
}


def stored_per_symbol(records) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records_of(records, KIND_OPEN_INTEREST):
        counts[record["symbol"]] = counts.get(record["symbol"], 0) + 1
    return counts


def test_every_symbol_is_polled_at_the_interval_and_each_answer_is_one_record(tmp_path):
    async def scenario(sim, service):
        await asyncio.sleep(3.0)

    symbols = ("BTCUSDT", "ETHUSDT")
    records, accounting = collect_in_process(tmp_path, scenario, symbols=symbols, **OI_SETTINGS)
    stored = records_of(records, KIND_OPEN_INTEREST)
    assert stored_per_symbol(records) == accounting["rest"]["answered"]["openInterest"], "one record per answer"
    assert all(5 <= count <= 8 for count in stored_per_symbol(records).values()), "every 0.5 s for 3 s"
    for symbol in symbols:
        mine = [r for r in stored if r["symbol"] == symbol]
        assert all(list(r) == ["t", "c", "n", "k", "s", "symbol", "f"] for r in mine)
        assert {r["s"] for r in mine} == {f"{symbol.lower()}@openInterest"}
        assert all(r["f"]["symbol"] == symbol and float(r["f"]["openInterest"]) > 0 for r in mine)
        assert all(isinstance(r["f"]["time"], int) for r in mine)
        gaps = sorted((b["t"] - a["t"]) / 1e9 for a, b in zip(mine, mine[1:], strict=False))
        assert 0.4 < gaps[len(gaps) // 2] < 0.65, f"{symbol} polled every 0.5 s: {gaps}"
    firsts = sorted(min(r["t"] for r in stored if r["symbol"] == symbol) for symbol in symbols)
    assert (firsts[1] - firsts[0]) / 1e9 > 0.2, "the two symbols are polled a quarter interval apart, never together"
    assert {r["c"] for r in stored} == {f"{stored[0]['c'].split('-')[0]}-open-interest"}
    assert [r["n"] for r in stored] == list(range(1, len(stored) + 1))


def test_rejected_polls_miss_their_samples_honour_retry_after_and_polling_recovers(tmp_path):
    seen = {}

    async def scenario(sim, service):
        await asyncio.sleep(1.0)
        await sim.apply_fault({"fault": "rest_status", "status": 503, "count": 2})
        await asyncio.sleep(1.0)
        await sim.apply_fault({"fault": "rest_status", "status": 429, "count": 1, "retry_after": 1})
        await asyncio.sleep(2.5)
        seen["health"] = service.health()
        seen["outcomes"] = {
            outcome: service.metrics.registry.get_sample_value(
                "harvest_open_interest_polls_total", {"symbol": "BTCUSDT", "outcome": outcome}
            )
            for outcome in ("ok", "http_503", "http_429", "skipped")
        }

    records, accounting = collect_in_process(tmp_path, scenario, **OI_SETTINGS)
    assert accounting["rest"]["rejected"] == {"429": 1, "503": 2}
    assert stored_per_symbol(records) == accounting["rest"]["answered"]["openInterest"], "failed polls store nothing"
    outcomes = seen["outcomes"]
    assert outcomes["http_503"] == 2 and outcomes["http_429"] == 1
    assert outcomes["skipped"] >= 1, "no request while Retry-After (1 s) runs: the turns meanwhile are skipped"
    stored = stored_per_symbol(records)["BTCUSDT"]
    assert stored - 1 <= outcomes["ok"] <= stored, "counted when stored (one more may come before the stop)"
    times = [r["t"] for r in records_of(records, KIND_OPEN_INTEREST)]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.95e9, "Retry-After was honoured"
    healthy, report = seen["health"]
    polls = report["open_interest"]["symbols"]["BTCUSDT"]
    assert healthy and polls["last_outcome"] == "ok" and polls["failed"] == 3 + outcomes["skipped"]
    assert not records_of(records, "bad_frame") and not records_of(records, "gap")

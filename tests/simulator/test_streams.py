"""Wire behaviour over real sockets: message shapes, id chains, book sync from REST + diffs, routing, live control."""

from __future__ import annotations

import asyncio
import re

import orjson
from websockets.asyncio.client import connect

from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from tests.simulator.ws_clients import collect, http_get, payloads, run

BTC_PRICE = re.compile(r"^\d+\.\d{2}$")
BTC_QTY = re.compile(r"^\d+\.\d{3}$")
FAST = SimulatorConfig(symbols=("BTCUSDT", "ETHUSDT"), seed=7, rate=3.0)


def test_every_stream_has_binance_field_names_types_and_decimals() -> None:
    async def scenario() -> None:
        async with running_simulator(FAST) as sim:
            public = "btcusdt@depth@100ms/btcusdt@depth20@100ms/btcusdt@bookTicker"
            async with (
                connect(f"{sim.ws_base}/market/stream?streams=btcusdt@aggTrade") as market,
                connect(f"{sim.ws_base}/public/stream?streams={public}") as book,
            ):
                trades, books = await asyncio.gather(collect(market, 0.6), collect(book, 0.6))
        assert {orjson.loads(frame)["stream"] for frame in books} == set(public.split("/"))
        for trade in payloads(trades, "btcusdt@aggTrade"):
            assert list(trade) == ["e", "E", "a", "s", "p", "q", "f", "l", "T", "m"]
            assert trade["e"] == "aggTrade" and trade["s"] == "BTCUSDT" and isinstance(trade["m"], bool)
            assert BTC_PRICE.match(trade["p"]) and BTC_QTY.match(trade["q"])
            assert all(isinstance(trade[key], int) for key in "EafTl") and trade["f"] <= trade["l"]
        for ticker in payloads(books, "btcusdt@bookTicker"):
            assert list(ticker) == ["e", "u", "E", "T", "s", "b", "B", "a", "A"]
            assert BTC_PRICE.match(ticker["b"]) and BTC_QTY.match(ticker["A"]) and ticker["b"] < ticker["a"]
        for kind in ("btcusdt@depth@100ms", "btcusdt@depth20@100ms"):
            for diff in payloads(books, kind):
                assert list(diff) == ["e", "E", "T", "s", "U", "u", "pu", "b", "a"]
                assert diff["e"] == "depthUpdate" and diff["U"] <= diff["u"]
                assert all(BTC_PRICE.match(p) and BTC_QTY.match(q) for p, q in diff["b"] + diff["a"])
        partial = payloads(books, "btcusdt@depth20@100ms")
        assert partial and all(len(frame["b"]) == 20 == len(frame["a"]) for frame in partial)
        assert len(payloads(trades)) > 10

    run(scenario())


def test_raw_stream_sends_bare_payloads() -> None:
    async def scenario() -> None:
        async with running_simulator(FAST) as sim, connect(f"{sim.ws_base}/public/ws/ethusdt@bookTicker") as ws:
            frames = [orjson.loads(frame) for frame in await collect(ws, 0.4)]
        assert frames and all(frame["e"] == "bookTicker" and frame["s"] == "ETHUSDT" for frame in frames)

    run(scenario())


def test_agg_ids_and_depth_update_ids_form_unbroken_chains_per_symbol() -> None:
    async def scenario() -> None:
        streams = "btcusdt@depth@100ms/ethusdt@depth@100ms/btcusdt@bookTicker/ethusdt@bookTicker"
        async with (
            running_simulator(FAST) as sim,
            connect(f"{sim.ws_base}/market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade") as market,
            connect(f"{sim.ws_base}/public/stream?streams={streams}") as book,
        ):
            trades, books = await asyncio.gather(collect(market, 1.0), collect(book, 1.0))
        for symbol in ("btcusdt", "ethusdt"):
            ids = [trade["a"] for trade in payloads(trades, f"{symbol}@aggTrade")]
            assert len(ids) > 10 and ids == list(range(ids[0], ids[0] + len(ids)))
            diffs = payloads(books, f"{symbol}@depth@100ms")
            assert len(diffs) >= 8
            for previous, diff in zip(diffs, diffs[1:], strict=False):
                assert diff["pu"] == previous["u"] and diff["U"] == previous["u"] + 1
            ticker_ids = [ticker["u"] for ticker in payloads(books, f"{symbol}@bookTicker")]
            assert ticker_ids == sorted(set(ticker_ids))

    run(scenario())


def apply_levels(book: dict[str, str], levels: list[list[str]]) -> None:
    """Binance rule: absolute quantities, zero deletes (deleting an unknown level is fine)."""
    for price, qty in levels:
        if float(qty) == 0:
            book.pop(price, None)
        else:
            book[price] = qty


def test_local_book_from_rest_snapshot_and_diffs_equals_the_simulator_book() -> None:
    async def scenario() -> None:
        async with running_simulator(FAST) as sim:
            async with connect(f"{sim.ws_base}/public/ws/btcusdt@depth@100ms") as ws:
                buffered: list[dict] = [orjson.loads(await ws.recv())]
                status, _, snapshot = await http_get(f"{sim.rest_base}/fapi/v1/depth?symbol=BTCUSDT&limit=1000")
                assert status == 200
                buffered += payloads(await collect(ws, 0.5))
                await sim.apply_fault({"fault": "burst", "seconds": 30, "multiplier": 0})
                buffered += payloads(await collect(ws, 0.3))
            last = snapshot["lastUpdateId"]
            events = [event for event in buffered if event["u"] >= last]
            assert events[0]["U"] <= last <= events[0]["u"] or events[0]["pu"] == last
            bids = dict(map(tuple, snapshot["bids"]))
            asks = dict(map(tuple, snapshot["asks"]))
            previous = None
            for event in events:
                assert previous is None or event["pu"] == previous
                apply_levels(bids, event["b"])
                apply_levels(asks, event["a"])
                previous = event["u"]
            _, _, final = await http_get(f"{sim.rest_base}/fapi/v1/depth?symbol=BTCUSDT&limit=1000")
            assert final["lastUpdateId"] == previous, "the market is paused and every diff was delivered"
            assert bids == dict(map(tuple, final["bids"])) and asks == dict(map(tuple, final["asks"]))
            market = sim.exchange.feed("BTCUSDT").market
            spec = market.spec
            assert bids == {spec.price(tick): spec.qty(lots) for tick, lots in market.bids.lots.items()}
            assert asks == {spec.price(tick): spec.qty(lots) for tick, lots in market.asks.lots.items()}

    run(scenario())


def test_stream_on_the_wrong_route_is_acknowledged_then_silent() -> None:
    async def scenario() -> None:
        async with (
            running_simulator(FAST) as sim,
            connect(f"{sim.ws_base}/public/ws") as public,
            connect(f"{sim.ws_base}/market/stream?streams=btcusdt@bookTicker/btcusdt@depth@100ms") as market,
        ):
            await public.send(orjson.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 1}).decode())
            assert orjson.loads(await public.recv()) == {"result": None, "id": 1}
            await public.send('{"method":"LIST_SUBSCRIPTIONS","id":2}')
            assert orjson.loads(await public.recv()) == {"result": ["btcusdt@aggTrade"], "id": 2}
            silent_public, silent_market = await asyncio.gather(collect(public, 0.5), collect(market, 0.5))
            assert silent_public == [] and silent_market == []
            streams = sim.accounting()["connections"]
            assert streams["c1"]["streams"]["btcusdt@aggTrade"]["frames"] == 0

    run(scenario())


def test_live_subscribe_and_unsubscribe_start_and_stop_a_stream() -> None:
    async def scenario() -> None:
        async with running_simulator(FAST) as sim, connect(f"{sim.ws_base}/market/ws") as ws:
            await ws.send('{"method":"SUBSCRIBE","params":["ethusdt@aggTrade"],"id":7}')
            assert orjson.loads(await ws.recv()) == {"result": None, "id": 7}
            received = [orjson.loads(frame) for frame in await collect(ws, 0.5)]
            assert received and all(frame["e"] == "aggTrade" and frame["s"] == "ETHUSDT" for frame in received)
            await ws.send('{"method":"UNSUBSCRIBE","params":["ethusdt@aggTrade"],"id":8}')
            tail = [orjson.loads(frame) for frame in await collect(ws, 0.4)]
            reply_at = tail.index({"result": None, "id": 8})
            assert tail[reply_at + 1 :] == []
            await ws.send("not json")
            assert "error" in orjson.loads(await ws.recv())

    run(scenario())


def test_more_than_ten_control_messages_in_a_second_drop_the_connection() -> None:
    async def scenario() -> None:
        async with running_simulator(FAST) as sim, connect(f"{sim.ws_base}/market/ws") as ws:
            for request_id in range(12):
                await ws.send(f'{{"method":"LIST_SUBSCRIPTIONS","id":{request_id}}}')
            replies = await collect(ws, 2.0)
            reason = sim.accounting()["connections"]["c1"]["close_reason"]
        assert len(replies) <= 10 and ws.state.name == "CLOSED"
        assert reason == "more than 10 control messages in one second"

    run(scenario())

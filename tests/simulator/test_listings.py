"""Listing and delisting symbols while the simulator runs, over a real admin HTTP API, websockets and REST: a listed
symbol trades on every stream and in REST, a delisted one falls silent and answers 400, a relisted one continues its
ids, and bad requests answer 400 with a message."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from harvest_pipeline.simulator import ListingError, SimulatorConfig, running_simulator
from harvest_pipeline.simulator.ids import first_ids_at
from tests.simulator.ws_clients import clock_offset_before, collect, http_get, payloads, run

MARKET_KINDS = ("aggTrade", "trade", "markPrice@1s", "markPrice", "forceOrder", "kline_1m")
PUBLIC_KINDS = ("depth@100ms", "depth20@100ms", "bookTicker")
INVALID_SYMBOL = {"code": -1121, "msg": "Invalid symbol."}
RELISTED_MARKET = "dogeusdt@aggTrade/dogeusdt@trade/dogeusdt@kline_1m"


DELISTED_ETH_PATHS = (
    "depth?symbol=ETHUSDT",
    "aggTrades?symbol=ETHUSDT",
    "openInterest?symbol=ETHUSDT",
    "ticker/24hr?symbol=ETHUSDT",
    "premiumIndex?symbol=ETHUSDT",
)
"""REST paths about ETHUSDT, each refused once it is delisted."""


def matched_ms(frame: dict[str, Any]) -> int:
    """When the exchange made a frame's content: the matching time ``T`` of trades, book tickers and depth diffs
    (their ``E`` follows by the publish latency), the event time ``E`` of the frames the clock makes."""
    return int(frame["T"] if frame["e"] in ("aggTrade", "trade", "bookTicker", "depthUpdate") else frame["E"])


def streams_of(symbol: str, kinds: tuple[str, ...]) -> list[str]:
    return [f"{symbol.lower()}@{kind}" for kind in kinds]


async def post_listing(admin_base: str, body: Any) -> tuple[int, Any]:
    """POST a listing request (a JSON value, or raw bytes) to the admin API; status and decoded answer."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with aiohttp.ClientSession() as session, session.post(f"{admin_base}/admin/listing", data=data) as answer:
        return answer.status, orjson.loads(await answer.read())


async def subscribe(ws: ClientConnection, streams: list[str], request_id: int) -> Any:
    await ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": streams, "id": request_id}).decode())
    return orjson.loads(await ws.recv())


def assert_consecutive(ids: list[int]) -> None:
    assert ids and ids == list(range(ids[0], ids[0] + len(ids)))


def assert_depth_chain(diffs: list[dict[str, Any]]) -> None:
    assert diffs
    for previous, diff in zip(diffs, diffs[1:], strict=False):
        assert diff["pu"] == previous["u"] and diff["U"] == previous["u"] + 1


def test_a_symbol_listed_over_http_trades_on_every_stream_and_in_rest_after_a_silent_subscription() -> None:
    async def scenario() -> dict[str, Any]:
        config = SimulatorConfig(symbols=("BTCUSDT",), seed=3, liquidation_share=0.5)
        market_streams = "/".join(streams_of("DOGEUSDT", MARKET_KINDS))
        async with (
            running_simulator(config) as sim,
            connect(f"{sim.ws_base}/market/stream?streams={market_streams}") as market,
            connect(f"{sim.ws_base}/public/stream") as public,
        ):
            base = f"{sim.rest_base}/fapi/v1"
            seen: dict[str, Any] = {"reply": await subscribe(public, streams_of("DOGEUSDT", PUBLIC_KINDS), 1)}
            seen["before"] = await collect(market, 0.4) + await collect(public, 0.1)
            seen["depth_before"] = await http_get(f"{base}/depth?symbol=DOGEUSDT")
            collecting = asyncio.gather(collect(market, 3.4), collect(public, 3.4))
            seen["listed"] = await post_listing(
                sim.admin_base, {"symbol": "DOGEUSDT", "status": "TRADING", "events_per_second": 400}
            )
            seen["market"], seen["public"] = await collecting
            for path in (
                "exchangeInfo",
                "ticker/24hr",
                "depth?symbol=DOGEUSDT&limit=5",
                "openInterest?symbol=DOGEUSDT",
                "premiumIndex?symbol=dogeusdt",
                "aggTrades?symbol=DOGEUSDT&limit=1000",
            ):
                seen[path.partition("?")[0]] = await http_get(f"{base}/{path}")
            seen["accounting"] = sim.accounting()
            return seen

    seen = run(scenario())
    assert seen["reply"] == {"result": None, "id": 1}
    assert seen["before"] == [] and seen["depth_before"][2] == INVALID_SYMBOL, "subscribed but silent until listed"
    status, entry = seen["listed"]
    assert status == 200 and entry["symbol"] == "DOGEUSDT" and entry["status"] == "TRADING"
    assert (entry["baseAsset"], entry["pricePrecision"], entry["quantityPrecision"]) == ("DOGE", 5, 0)
    listings = seen["accounting"]["listings"]
    assert [change["status"] for change in listings["BTCUSDT"]] == ["TRADING"]
    assert [change["status"] for change in listings["DOGEUSDT"]] == ["TRADING"]
    listed_ms = listings["DOGEUSDT"][0]["at_ms"]
    first_ids = first_ids_at(listed_ms)

    received = {
        **{s: payloads(seen["market"], s) for s in streams_of("DOGEUSDT", MARKET_KINDS)},
        **{s: payloads(seen["public"], s) for s in streams_of("DOGEUSDT", PUBLIC_KINDS)},
    }
    assert all(received.values()), {stream: len(frames) for stream, frames in received.items()}
    symbols = {frame["o"]["s"] if "o" in frame else frame["s"] for frames in received.values() for frame in frames}
    assert symbols == {"DOGEUSDT"} and all(
        frame["E"] >= listed_ms for frames in received.values() for frame in frames
    ), "nothing before the listing"
    agg_trades, trades = received["dogeusdt@aggTrade"], received["dogeusdt@trade"]
    assert_consecutive([trade["a"] for trade in agg_trades])
    assert_consecutive([trade["t"] for trade in trades])
    assert agg_trades[0]["a"] >= first_ids.agg_id and trades[0]["t"] >= first_ids.trade_id
    assert trades[0]["t"] == agg_trades[0]["f"] and trades[-1]["t"] <= agg_trades[-1]["l"], "the same trades"
    assert_depth_chain(received["dogeusdt@depth@100ms"])
    assert received["dogeusdt@depth@100ms"][0]["U"] > first_ids.update_id
    ticker_ids = [ticker["u"] for ticker in received["dogeusdt@bookTicker"]]
    assert ticker_ids == sorted(set(ticker_ids))

    info = {row["symbol"]: row for row in seen["exchangeInfo"][2]["symbols"]}
    assert info["DOGEUSDT"] == entry and info["BTCUSDT"]["status"] == "TRADING"
    tickers = {row["symbol"]: row for row in seen["ticker/24hr"][2]}
    assert set(tickers) == {"BTCUSDT", "DOGEUSDT"} and tickers["DOGEUSDT"]["openTime"] == listed_ms
    assert Decimal(tickers["DOGEUSDT"]["quoteVolume"]) > 0 and tickers["DOGEUSDT"]["firstId"] == trades[0]["t"]
    assert all(seen[path][0] == 200 for path in ("depth", "openInterest", "premiumIndex", "aggTrades"))
    assert seen["depth"][2]["lastUpdateId"] >= received["dogeusdt@depth@100ms"][-1]["u"]
    assert seen["openInterest"][2]["symbol"] == seen["premiumIndex"][2]["symbol"] == "DOGEUSDT"
    rest_ids = [trade["a"] for trade in seen["aggTrades"][2]]
    assert set(trade["a"] for trade in agg_trades) <= set(rest_ids)
    assert seen["accounting"]["trades"]["DOGEUSDT"]["first_id"] == agg_trades[0]["a"]


def test_a_symbol_listed_in_process_trades_with_the_instrument_fields_given() -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[str], Any]:
        async with (
            running_simulator(SimulatorConfig(symbols=("BTCUSDT",), seed=5)) as sim,
            connect(f"{sim.ws_base}/market/stream?streams=pepeusdt@aggTrade/solusdt@aggTrade") as ws,
        ):
            pepe = await sim.set_listing(
                "PEPEUSDT",
                "TRADING",
                tick_size="0.0000001",
                step_size=100,
                start_price=0.0001,
                mean_order_lots="40",
                events_per_second=300,
            )
            sol = await sim.set_listing("SOLUSDT", "TRADING")
            again = await sim.set_listing("PEPEUSDT", "TRADING", tick_size="0.0000001")
            frames = await collect(ws, 1.0)
            return pepe, sol, frames, (again, sim.accounting()["listings"])

    pepe, sol, frames, (again, listings) = run(scenario())
    filters = {f["filterType"]: f for f in pepe["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.0000001" and filters["LOT_SIZE"]["stepSize"] == "100"
    assert again == pepe and len(listings["PEPEUSDT"]) == 1, "listing a trading symbol again changes nothing"
    assert {f["filterType"]: f for f in sol["filters"]}["PRICE_FILTER"]["tickSize"] == "0.0100", "built-in instrument"
    trades = payloads(frames, "pepeusdt@aggTrade")
    assert len(trades) > 10 and payloads(frames, "solusdt@aggTrade")
    assert all(len(trade["p"].partition(".")[2]) == 7 and int(trade["q"]) % 100 == 0 for trade in trades)
    assert all(Decimal("0.00009") < Decimal(trade["p"]) < Decimal("0.00011") for trade in trades)


def test_a_delisted_symbol_falls_silent_settles_in_exchange_info_answers_400_and_keeps_its_accounting() -> None:
    async def scenario() -> dict[str, Any]:
        market_streams = "/".join(streams_of("ETHUSDT", ("aggTrade", "trade", "markPrice@1s", "kline_1m")))
        public_streams = "/".join([*streams_of("ETHUSDT", PUBLIC_KINDS), "btcusdt@bookTicker"])
        async with (
            running_simulator(SimulatorConfig(symbols=("BTCUSDT", "ETHUSDT"), seed=9, rate=3.0)) as sim,
            connect(f"{sim.ws_base}/market/stream?streams={market_streams}") as market,
            connect(f"{sim.ws_base}/public/stream?streams={public_streams}") as public,
        ):
            base = f"{sim.rest_base}/fapi/v1"
            collecting = asyncio.gather(collect(market, 4.0), collect(public, 4.0))
            await asyncio.sleep(1.5)
            seen: dict[str, Any] = {
                "delisted": await post_listing(sim.admin_base, {"symbol": "ETHUSDT", "status": "SETTLING"})
            }
            seen["again"] = await post_listing(sim.admin_base, {"symbol": "ETHUSDT", "status": "SETTLING"})
            await asyncio.sleep(0.3)
            seen["right_after"] = sim.accounting()
            seen["market"], seen["public"] = await collecting
            await market.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 7}).decode())
            seen["subscriptions"] = orjson.loads(await market.recv())
            seen["later"] = sim.accounting()
            for path in (*DELISTED_ETH_PATHS, "ticker/24hr", "premiumIndex", "exchangeInfo"):
                seen[path] = await http_get(f"{base}/{path}")
            return seen

    seen = run(scenario())
    status, entry = seen["delisted"]
    assert status == 200 and entry["symbol"] == "ETHUSDT" and entry["status"] == "SETTLING"
    assert seen["again"] == (200, entry), "delisting a delisted symbol changes nothing"
    listings = seen["later"]["listings"]["ETHUSDT"]
    assert [change["status"] for change in listings] == ["TRADING", "SETTLING"]
    delisted_ms = listings[1]["at_ms"]

    eth_frames = [*payloads(seen["market"]), *[p for p in payloads(seen["public"]) if p["s"] == "ETHUSDT"]]
    assert len(eth_frames) > 50 and max(map(matched_ms, eth_frames)) <= delisted_ms, "silent after the change"
    btc_after = [p for p in payloads(seen["public"], "btcusdt@bookTicker") if p["E"] > delisted_ms + 1000]
    assert btc_after, "the other symbols go on"
    eth_streams = [s for s in seen["later"]["streams"] if s.startswith("ethusdt@")]
    assert len(eth_streams) == 7
    assert {s: seen["right_after"]["streams"][s] for s in eth_streams} == {
        s: seen["later"]["streams"][s] for s in eth_streams
    }, "the accounting does not move after the change"
    assert sum(seen["later"]["streams"][s]["frames"] for s in eth_streams) == len(eth_frames)
    assert seen["right_after"]["trades"]["ETHUSDT"] == seen["later"]["trades"]["ETHUSDT"]
    assert seen["later"]["trades"]["ETHUSDT"]["issued"] > 0, "its accounting stays"
    assert set(streams_of("ETHUSDT", ("aggTrade", "trade"))) <= set(seen["subscriptions"]["result"])

    for path in DELISTED_ETH_PATHS:
        assert seen[path][0] == 400 and seen[path][2] == INVALID_SYMBOL, path
    assert [row["symbol"] for row in seen["ticker/24hr"][2]] == ["BTCUSDT"]
    assert [row["symbol"] for row in seen["premiumIndex"][2]] == ["BTCUSDT"]
    statuses = {row["symbol"]: row["status"] for row in seen["exchangeInfo"][2]["symbols"]}
    assert statuses == {"BTCUSDT": "TRADING", "ETHUSDT": "SETTLING"}


def test_a_relisted_symbol_resumes_its_model_with_ids_continuing_above_the_earlier_ones() -> None:
    async def scenario() -> tuple[list[str], list[str], dict[str, Any]]:
        # a minute ends while it is delisted (1.6 s in): that minute is closed unpublished
        config = SimulatorConfig(symbols=("BTCUSDT",), seed=11, clock_offset_ms=clock_offset_before(60_000, 1_600))
        async with (
            running_simulator(config) as sim,
            connect(f"{sim.ws_base}/market/stream?streams={RELISTED_MARKET}") as market,
            connect(f"{sim.ws_base}/public/stream?streams=dogeusdt@depth@100ms/dogeusdt@bookTicker") as public,
        ):
            collecting = asyncio.gather(collect(market, 3.6), collect(public, 3.6))
            await sim.set_listing("DOGEUSDT", "TRADING", events_per_second=300)
            await asyncio.sleep(1.0)
            await sim.set_listing("DOGEUSDT", "SETTLING")
            await asyncio.sleep(1.2)
            status, relisted = await post_listing(sim.admin_base, {"symbol": "DOGEUSDT", "status": "TRADING"})
            assert status == 200 and relisted["status"] == "TRADING"
            market_frames, public_frames = await collecting
            return market_frames, public_frames, sim.accounting()

    market_frames, public_frames, accounting = run(scenario())
    listed, delisted, relisted = (change["at_ms"] for change in accounting["listings"]["DOGEUSDT"])
    assert [change["status"] for change in accounting["listings"]["DOGEUSDT"]] == ["TRADING", "SETTLING", "TRADING"]
    frames = [*payloads(market_frames), *payloads(public_frames)]
    assert not [frame for frame in frames if delisted < matched_ms(frame) < relisted], "silent while delisted"
    for stream, key in (("dogeusdt@aggTrade", "a"), ("dogeusdt@trade", "t")):
        ids = [frame[key] for frame in payloads(market_frames, stream)]
        before = [i for i, frame in zip(ids, payloads(market_frames, stream), strict=True) if frame["T"] <= delisted]
        assert before and len(ids) > len(before), stream
        assert_consecutive(ids)  # every id once, the ones after the relisting right above the earlier ones
    diffs = payloads(public_frames, "dogeusdt@depth@100ms")
    assert any(diff["E"] >= relisted for diff in diffs) and any(diff["E"] <= delisted for diff in diffs)
    assert_depth_chain(diffs)  # unbroken across the delisting: a local book stays in sync
    ticker_ids = [ticker["u"] for ticker in payloads(public_frames, "dogeusdt@bookTicker")]
    assert ticker_ids == sorted(set(ticker_ids))
    klines = payloads(market_frames, "dogeusdt@kline_1m")
    minutes = [(kline["k"]["t"], kline["E"] > delisted) for kline in klines]
    assert minutes == sorted(minutes) and sorted(set(minutes)) == [
        (listed // 60_000 * 60_000, False),
        (relisted // 60_000 * 60_000, True),
    ]
    assert not any(kline["k"]["x"] for kline in klines) and all(kline["E"] >= listed for kline in klines)


def test_bad_listing_requests_answer_400_with_a_message_and_change_nothing() -> None:
    async def scenario() -> tuple[list[tuple[int, Any]], list[str], dict[str, Any]]:
        async with running_simulator(SimulatorConfig(symbols=("BTCUSDT",), seed=2)) as sim:
            await sim.set_listing("DOGEUSDT", "TRADING")
            answers = [
                await post_listing(sim.admin_base, body)
                for body in (
                    {"symbol": "doge-usdt", "status": "TRADING"},
                    {"symbol": "dogeusdt", "status": "TRADING"},
                    {"symbol": "SHIBUSDT", "status": "CLOSE"},
                    {"symbol": "SHIBUSDT", "status": "SETTLING"},
                    {"symbol": "SHIBUSDT", "status": "TRADING", "tick": "0.1"},
                    {"symbol": "SHIBUSDT", "status": "TRADING", "tick_size": "-0.1"},
                    {"symbol": "SHIBUSDT", "status": "TRADING", "tick_size": "0.000000001"},
                    {"symbol": "SHIBUSDT", "status": "TRADING", "start_price": "0.00100"},
                    {"symbol": "SHIBUSDT", "status": "TRADING", "mean_order_lots": 0},
                    {"symbol": "SHIBUSDT", "status": "TRADING", "events_per_second": "many"},
                    {"symbol": "DOGEUSDT", "status": "SETTLING", "tick_size": "0.001"},
                    {"symbol": "DOGEUSDT", "status": "TRADING", "tick_size": "0.001"},
                    ["DOGEUSDT", "TRADING"],
                    b"{not json",
                )
            ]
            errors = []
            for symbol, status in (("SHIBUSDT", "SETTLING"), ("SHIB", "HALTED")):
                with pytest.raises(ListingError) as caught:
                    await sim.set_listing(symbol, status)
                errors.append(str(caught.value))
            return answers, errors, sim.accounting()

    answers, errors, accounting = run(scenario())
    assert [status for status, _ in answers] == [400] * len(answers)
    messages = [body["error"] for _, body in answers]
    assert all(body["ok"] is False for _, body in answers)
    expected = [
        "invalid symbol 'doge-usdt'",
        "invalid symbol 'dogeusdt'",
        "unknown status 'CLOSE'",
        "cannot delist SHIBUSDT: it is not listed",
        "unknown instrument fields ['tick']",
        "tick_size must be a positive decimal",
        "tick_size '0.000000001' has more than 8 decimals",
        "start_price '0.00100' is only 100 x tick_size 0.00001",
        "mean_order_lots must be a whole number >= 1",
        "events_per_second must be a number > 0",
        "instrument fields go with status TRADING",
        "DOGEUSDT keeps the instrument of its first listing",
        "a listing request is a JSON object",
        "body is not JSON",
    ]
    assert all(text in message for text, message in zip(expected, messages, strict=True)), messages
    assert "cannot delist SHIBUSDT" in errors[0] and "unknown status 'HALTED'" in errors[1]
    assert set(accounting["listings"]) == {"BTCUSDT", "DOGEUSDT"} and len(accounting["listings"]["DOGEUSDT"]) == 1

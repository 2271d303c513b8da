"""The market-route kinds beyond aggTrade (trade, markPrice@1s, forceOrder, kline_1m) are subscribed on /market and
every frame the exchange sent them is sealed, under its own stream name."""

import asyncio

from harvest_pipeline.collector.config import DEFAULT_STREAM_KINDS
from tests.collector.harness import collect_in_process, records_of, sent_per_stream
from tests.collector.sealed import frames_per_stream

SYMBOLS = ("BTCUSDT", "ETHUSDT")
NEW_KINDS = ("trade", "markPrice@1s", "forceOrder", "kline_1m")


def test_new_market_streams_ride_the_market_route_and_every_frame_sent_is_sealed(tmp_path):
    async def scenario(sim, service):
        await asyncio.sleep(3.0)

    kinds = (*DEFAULT_STREAM_KINDS, "trade")
    records, accounting = collect_in_process(tmp_path, scenario, symbols=SYMBOLS, stream_kinds=kinds, watchdog_s=3.0)

    connects = {r["route"]: r for r in records_of(records, "connect")}
    assert set(connects) == {"market", "public"} and len(records_of(records, "connect")) == 2, "no reconnect"
    assert connects["market"]["url"].endswith("/market/stream")
    market = [f"{symbol.lower()}@{kind}" for symbol in SYMBOLS for kind in ("aggTrade", *NEW_KINDS)]
    assert sorted(connects["market"]["streams"]) == sorted(market)

    assert dict(frames_per_stream(records)) == sent_per_stream(accounting), "sent = sealed, per stream"
    assert not records_of(records, "bad_frame") and not records_of(records, "watchdog")
    for symbol in SYMBOLS:
        for kind in ("trade", "markPrice@1s", "kline_1m"):
            stream = f"{symbol.lower()}@{kind}"
            frames = records_of(records, "frame", stream)
            assert frames, f"{stream} recorded"
            assert all(r["c"] == connects["market"]["c"] and r["f"]["stream"] == stream for r in frames)
            assert {r["f"]["data"]["s"] for r in frames} == {symbol}
        marks = records_of(records, "frame", f"{symbol.lower()}@markPrice@1s")
        assert 2 <= len(marks) <= 4 and {r["f"]["data"]["e"] for r in marks} == {"markPriceUpdate"}
        liquidations = records_of(records, "frame", f"{symbol.lower()}@forceOrder")
        assert len(liquidations) == accounting["liquidations"][symbol]["published"]
        assert {r["f"]["data"]["o"]["s"] for r in liquidations} <= {symbol}

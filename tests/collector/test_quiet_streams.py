"""Quiet streams (liquidations) are recorded but never watched for silence: no watchdog, no reconnect, no alarm."""

import asyncio

from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.collector.service import CollectorService
from harvest_pipeline.collector.watchdog import Watchdog
from harvest_pipeline.paths import DataPaths
from tests.collector.harness import collect_in_process, records_of, sent_per_stream
from tests.collector.sealed import frames_per_stream

SECOND = 1_000_000_000
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def test_the_watchdog_skips_a_silent_quiet_stream_and_health_shows_it_quiet(tmp_path):
    config = CollectorConfig(stream_kinds=("aggTrade", "forceOrder"), watchdog_s=1.0)
    service = CollectorService(config, DataPaths.from_root(tmp_path), clock=lambda: 100 * SECOND)
    for state in service.intake.streams.values():
        state.connection, state.watch_since_ns = "b-1", 0
    shards = {name: shard for shard in service.shards for name in shard.streams}
    watchdog = Watchdog(service.intake, shards, config.watchdog_s)

    healthy, report = service.health()
    streams = report["streams"]
    assert streams["btcusdt@forceOrder"]["state"] == "quiet" and not streams["btcusdt@forceOrder"]["watched"]
    assert streams["btcusdt@aggTrade"]["state"] == "silent" and streams["btcusdt@aggTrade"]["watched"]
    assert not healthy and report["problems"] == ["stream btcusdt@aggTrade silent"]

    assert watchdog.check(100 * SECOND) == ["btcusdt@aggTrade"]
    assert watchdog.check(10_000 * SECOND) == ["btcusdt@aggTrade"], "hours of silence are still fine when quiet"
    assert service.intake.streams["btcusdt@forceOrder"].watchdog_fires == 0

    service.intake.streams["btcusdt@forceOrder"].watch_since_ns = None  # its connection is down
    assert service.health()[1]["streams"]["btcusdt@forceOrder"]["state"] == "connecting"


QUIET_SETTINGS = {
    "stream_kinds": ("aggTrade", "markPrice@1s", "forceOrder"),
    "watchdog_s": 1.5,  # above markPrice@1s's 1 s cadence; forceOrder stays silent for more than twice as long
    "simulator_settings": {"liquidation_share": 0.0},
}


def test_a_silent_liquidation_stream_is_never_watched_while_its_neighbours_stay_live(tmp_path):
    seen = {}

    async def scenario(sim, service):
        await asyncio.sleep(4.0)
        seen["health"] = service.health()
        seen["watched"] = {
            stream: service.metrics.registry.get_sample_value("harvest_stream_watched", {"stream": stream})
            for stream in service.intake.streams
        }

    records, accounting = collect_in_process(tmp_path, scenario, symbols=SYMBOLS, **QUIET_SETTINGS)
    sent = sent_per_stream(accounting)
    assert sent["btcusdt@forceOrder"] == sent["ethusdt@forceOrder"] == 0, "no liquidation was sent"
    assert not records_of(records, "watchdog"), "4 s of liquidation silence fired no watchdog"
    reasons = [r["reason"] for r in records_of(records, "disconnect")]
    assert not [reason for reason in reasons if reason.startswith("replaced")], "the connection was never replaced"
    assert dict(frames_per_stream(records)) == {name: count for name, count in sent.items() if count}
    for symbol in ("btcusdt", "ethusdt"):
        assert len(records_of(records, "frame", f"{symbol}@markPrice@1s")) >= 3
    healthy, report = seen["health"]
    assert healthy and report["problems"] == []
    for symbol in ("btcusdt", "ethusdt"):
        quiet = report["streams"][f"{symbol}@forceOrder"]
        assert (quiet["state"], quiet["watched"], quiet["frames"], quiet["watchdog_fires"]) == ("quiet", False, 0, 0)
        assert report["streams"][f"{symbol}@markPrice@1s"]["state"] == "live"
    assert seen["watched"] == {name: 0.0 if name.endswith("@forceOrder") else 1.0 for name in seen["watched"]}


def test_a_restart_declares_a_quiet_streams_down_time_from_the_end_of_the_previous_run(tmp_path):
    async def scenario(sim, service):
        await asyncio.sleep(1.5)

    first, _ = collect_in_process(tmp_path, scenario, **QUIET_SETTINGS)
    both, _ = collect_in_process(tmp_path, scenario, **QUIET_SETTINGS)
    second = both[len(first) :]
    down = {r["s"]: r for r in records_of(second, "gap") if r["reason"] == "collector down (restart)"}
    assert set(down) == {"btcusdt@aggTrade", "btcusdt@markPrice@1s", "btcusdt@forceOrder"}
    assert down["btcusdt@forceOrder"]["from_time_ms"] == first[-1]["t"] // 1_000_000, "from the run's last record"
    assert down["btcusdt@forceOrder"]["last_id"] is None
    last_mark = records_of(first, "frame", "btcusdt@markPrice@1s")[-1]
    assert down["btcusdt@markPrice@1s"]["from_time_ms"] == last_mark["t"] // 1_000_000, "watched: from its last frame"

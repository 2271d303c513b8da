"""Symbol partitions are dynamic: compaction registers a symbol once it records it, the ``symbol_partitions`` sensor
registers the configured ones and those with Parquet on disk, ``ALL`` and junk never become partitions, registration
survives concurrent writers (SQLite and PostgreSQL), and materializations from the static symbol list keep their
meaning. Real Dagster instances, real segments and Parquet."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time
from pathlib import Path

import dagster as dg
import pytest

from assets.book import book
from assets.consolidation import (
    DAY_SYMBOL_PARTITIONS,
    NIGHTLY_CONSOLIDATION,
    daily_asset_key,
    daily_consolidation,
)
from assets.features import AFTER_CONSOLIDATION, features_1s
from assets.resources import HarvestStorage
from harvest_pipeline import segments
from harvest_pipeline.dagster_home import ensure_dagster_home
from harvest_pipeline.features.sources import day_start_ms
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.settings import SETTINGS_FILE_ENV
from harvest_pipeline.status import gather_status
from harvest_pipeline.store import kind_dir
from harvest_pipeline.symbol_partitions import SYMBOL_PARTITIONS_NAME, register_symbols, registered_symbols
from sensors.features import features_refresh, features_refresh_job
from sensors.symbols import RESCAN_S, symbol_partitions
from tests.compaction.frames import MS, SegmentBuilder, agg_trade, book_ticker
from tests.features.rawdata import DAY, T0, write_events, write_trades
from tests.ops.compacted import compact
from tests.ops.postgres_server import running_postgres

CLOSED_PORT_URL = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the symbols it configures; nothing leaks in from the caller's environment."""
    for name in ("HARVEST_SYMBOLS", SETTINGS_FILE_ENV, "HARVEST_DATA_ROOT", "HARVEST_PARQUET_DIR"):
        monkeypatch.delenv(name, raising=False)


def tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, root: Path, cursor: str | None = None):
    """One evaluation of ``sensor`` on ``instance`` for the data under ``root``."""
    resources = {"storage": HarvestStorage(data_root=str(root))}
    return sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))


def seal_segment(root: Path, instance: dg.DagsterInstance, builder: SegmentBuilder) -> str:
    """Seal ``builder``'s segment and register it as a segment partition, as the ``sealed_segments`` sensor does."""
    name = builder.seal(segments.segment_name(builder.opened_at_ns, "test", "b00t", 1)).name
    instance.add_dynamic_partitions("segments", [name])
    return name


def test_a_symbol_configured_nowhere_becomes_a_partition_when_compacted_and_today_refreshes(tmp_path, monkeypatch):
    monkeypatch.setenv("HARVEST_SYMBOLS", "BTCUSDT")
    today = dt.datetime.now(dt.UTC).date()
    start = day_start_ms(today) + 1_000
    builder = SegmentBuilder(tmp_path, opened_at_ns=start * MS)
    for i in range(5):
        builder.frame("solusdt@aggTrade", agg_trade("SOLUSDT", 100 + i, start + i, price="187.25"), start + i + 3)
        builder.frame("solusdt@bookTicker", book_ticker("SOLUSDT", 500 + i, start + i), start + i + 3)
    with dg.instance_for_test() as instance:
        name = seal_segment(tmp_path, instance, builder)
        assert registered_symbols(instance) == []

        assert compact(tmp_path, instance, name=name)
        assert registered_symbols(instance) == ["SOLUSDT"], "registered by the run that recorded it first"
        assert compact(tmp_path, instance, name=name), "a re-run registers nothing twice"
        assert registered_symbols(instance) == ["SOLUSDT"]

        refresh = tick(features_refresh, instance, tmp_path)
        [request] = refresh.run_requests
        assert (request.partition_key, request.job_name) == (f"{today}|SOLUSDT", features_refresh_job.name)
        built = dg.materialize(
            [book, features_1s],
            partition_key=request.partition_key,
            instance=instance,
            resources={"storage": HarvestStorage(data_root=str(tmp_path))},
        )
        assert built.success
        [materialization] = built.asset_materializations_for_node("features_1s")
        assert materialization.metadata["trades"].value == 5


def test_the_sensor_registers_configured_and_recorded_symbols_first_and_rescans_hourly(tmp_path, monkeypatch):
    parquet = tmp_path / "parquet"
    write_trades(parquet, [(T0 + 1_000, 1, "100", "1", False)], symbol="ETHUSDT")
    write_trades(parquet, [(T0 + 1_000, 1, "100", "1", False)], symbol="XRPUSDT", day=DAY - dt.timedelta(days=30))
    monkeypatch.setenv("HARVEST_SYMBOLS", "BTCUSDT,SOLUSDT,top:5")  # a selector names no symbol: compaction's turn
    with dg.instance_for_test() as instance:
        first = tick(symbol_partitions, instance, tmp_path)
        assert sorted(registered_symbols(instance)) == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
        assert "registered BTCUSDT, ETHUSDT, SOLUSDT, XRPUSDT" in first.skip_reason.skip_message
        assert "no new symbol" in tick(symbol_partitions, instance, tmp_path, first.cursor).skip_reason.skip_message

        write_trades(parquet, [(T0 + 1_000, 1, "100", "1", False)], symbol="ADAUSDT")  # restored by hand, say
        monkeypatch.setenv("HARVEST_SYMBOLS", "BTCUSDT,SOLUSDT,top:5,DOGEUSDT")  # a restart with a new symbol
        quiet = tick(symbol_partitions, instance, tmp_path, first.cursor)
        assert quiet.skip_reason.skip_message == "registered DOGEUSDT (looked at the settings)", "no disk scan yet"
        hour_later = str(float(first.cursor) - RESCAN_S)
        tick(symbol_partitions, instance, tmp_path, hour_later)
        assert registered_symbols(instance)[-1] == "ADAUSDT"


def test_all_selectors_and_junk_never_become_symbol_partitions(tmp_path, monkeypatch):
    junk = ["ALL", "top:5", "TOP:5", "btcusdt", "BTC-USDT", "BTCUSDT\n", "", "B", "../ETC", "A" * 21]
    start = T0 + 3_600_000
    builder = SegmentBuilder(tmp_path, opened_at_ns=start * MS).control("connect", start, url="ws://x")
    builder.frame("btcusdt@aggTrade", agg_trade("BTCUSDT", 1, start + 1), start + 4)
    builder.frame("xrpusdt@aggTrade", b"not json at all {", start + 5)  # quarantined: an events row, no market data
    parquet = tmp_path / "parquet"
    write_trades(parquet, [(T0 + 1_000, 1, "100", "1", False)], symbol="ALL")
    write_events(parquet, [{"event": "connect", "event_time_ms": T0}], symbol="DOGEUSDT")  # the ledger alone
    (parquet / f"date={DAY}" / "symbol=btc-usdt" / "kind=prices").mkdir(parents=True)
    (parquet / f"date={DAY}" / "symbol=BTCUSDT\n" / "kind=prices").mkdir(parents=True)
    monkeypatch.setenv("HARVEST_SYMBOLS", "BTCUSDT")
    with dg.instance_for_test() as instance:
        assert register_symbols(instance, junk) == []
        assert registered_symbols(instance) == []

        assert compact(tmp_path, instance, name=seal_segment(tmp_path, instance, builder))
        usdm = parquet / "market=usdm"  # the legacy folders moved in, then the compaction wrote there
        assert kind_dir(usdm, DAY, "ALL", "events").is_dir() and kind_dir(usdm, DAY, "XRPUSDT", "events").is_dir()
        assert registered_symbols(instance) == ["BTCUSDT"]
        tick(symbol_partitions, instance, tmp_path)
        assert registered_symbols(instance) == ["BTCUSDT"]


def stand_ins(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """``prices_daily`` and ``features_1s`` as declared with ``partitions_def``: their keys and automation conditions,
    no work (the symbol dimension is all that changed)."""

    @dg.asset(key=daily_asset_key("prices"), partitions_def=partitions_def, automation_condition=NIGHTLY_CONSOLIDATION)
    def prices_daily() -> None: ...

    after = AFTER_CONSOLIDATION

    @dg.asset(key=features_1s.key, deps=[prices_daily], partitions_def=partitions_def, automation_condition=after)
    def features() -> None: ...

    return [prices_daily, features]


def requested(result: dg.EvaluateAutomationConditionsResult) -> list[str]:
    keys = (daily_asset_key("prices"), features_1s.key)
    return sorted(f"{key.to_user_string()} {p}" for key in keys for p in result.get_requested_partitions(key))


def test_materializations_from_the_static_symbol_list_keep_their_keys_status_and_automation_state(
    tmp_path, monkeypatch
):
    static = dg.MultiPartitionsDefinition(
        {
            "date": DAY_SYMBOL_PARTITIONS.get_partitions_def_for_dimension("date"),
            "symbol": dg.StaticPartitionsDefinition(["BTCUSDT", "ETHUSDT"]),
        }
    )
    before, after = stand_ins(static), stand_ins(DAY_SYMBOL_PARTITIONS)
    keys = [f"{DAY}|BTCUSDT", f"{DAY}|ETHUSDT"]
    night = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(0, 21), tzinfo=dt.UTC)
    monkeypatch.setenv("HARVEST_SYMBOLS", "BTCUSDT")  # ETHUSDT is not configured any more: its Parquet tells
    write_trades(tmp_path / "parquet", [(T0 + 1_000, 1, "100", "1", False)], symbol="ETHUSDT")
    with dg.instance_for_test() as instance:

        def evaluate(assets: list[dg.AssetsDefinition], when: dt.datetime, cursor=None):
            return dg.evaluate_automation_conditions(assets, instance, evaluation_time=when, cursor=cursor)

        nightly = evaluate(before, night, evaluate(before, night - dt.timedelta(minutes=20)).cursor)
        assert requested(nightly) == [f"{asset} {key}" for asset in ("features_1s", "prices_daily") for key in keys]
        for key in keys:  # the runs the nightly tick requested, under the static definition
            assert dg.materialize(before, partition_key=key, instance=instance).success

        status = instance.get_status_by_partition(features_1s.key, keys, DAY_SYMBOL_PARTITIONS)
        assert status == dict.fromkeys(keys), "under the dynamic definition, a key counts once its symbol is one"
        assert requested(evaluate(after, night + dt.timedelta(minutes=5), nightly.cursor)) == []
        tick(symbol_partitions, instance, tmp_path)  # its first tick after the upgrade

        assert sorted(registered_symbols(instance)) == ["BTCUSDT", "ETHUSDT"]
        assert instance.get_materialized_partitions(features_1s.key) == set(keys), "the same key strings"
        status = instance.get_status_by_partition(features_1s.key, keys, DAY_SYMBOL_PARTITIONS)
        assert status == dict.fromkeys(keys, dg.AssetPartitionStatus.MATERIALIZED)
        later = evaluate(after, night + dt.timedelta(minutes=19), nightly.cursor)
        assert requested(later) == [], "the nightly tick handled before the switch is not requested again"
        next_night = evaluate(after, night + dt.timedelta(days=1), later.cursor)
        next_day = DAY + dt.timedelta(days=1)
        assert [line.split()[1] for line in requested(next_night)] == [f"{next_day}|BTCUSDT", f"{next_day}|ETHUSDT"] * 2

        resources = {"storage": HarvestStorage(data_root=str(tmp_path))}
        consolidated = dg.materialize(
            [daily_consolidation], partition_key=keys[1], instance=instance, resources=resources
        )
        assert consolidated.success
        history = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=daily_asset_key("prices"), asset_partitions=[keys[1]]), limit=10
        ).records
        assert len(history) == 2, "the static-era materialization and the new one, under one key"


def register_concurrently(home: str, start_s: float, rounds: int, errors: multiprocessing.Queue) -> None:
    """Register the same new symbols as the other processes, round after round, each round at the same moment."""
    failures = []
    with dg.DagsterInstance.from_config(home) as instance:
        for round_ in range(rounds):
            while time.time() < start_s + round_ * 0.25:
                pass
            try:
                register_symbols(instance, [f"S{round_}X{i}" for i in range(4)])
            except Exception as exc:  # noqa: BLE001 - reported to the test
                failures.append(f"{type(exc).__name__}: {exc}")
    errors.put(failures)


def assert_concurrent_registration_is_safe(paths: DataPaths, processes: int = 4, rounds: int = 12) -> None:
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    start_s = time.time() + 5  # every process has imported Dagster and opened the instance by then
    home = str(paths.dagster_home)
    arguments = (home, start_s, rounds, errors)
    workers = [context.Process(target=register_concurrently, args=arguments) for _ in range(processes)]
    for worker in workers:
        worker.start()
    failures = [failure for _ in workers for failure in errors.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=30)
    assert failures == []
    with dg.DagsterInstance.from_config(home) as instance:
        keys = instance.get_dynamic_partitions(SYMBOL_PARTITIONS_NAME)
    assert sorted(keys) == sorted(f"S{r}X{i}" for r in range(rounds) for i in range(4)), "each symbol once"


def test_concurrent_registration_of_the_same_symbols_never_fails_on_sqlite(tmp_path):
    paths = DataPaths.from_root(tmp_path)
    ensure_dagster_home(paths)
    assert_concurrent_registration_is_safe(paths)


def test_concurrent_registration_of_the_same_symbols_never_fails_on_postgresql(tmp_path):
    paths = DataPaths.from_root(tmp_path)
    with running_postgres() as server:
        ensure_dagster_home(paths, server.create_database("symbols"))
        assert_concurrent_registration_is_safe(paths)


def test_status_shows_the_certificates_of_the_symbol_partitions_or_of_the_disk_without_an_instance(tmp_path):
    paths = DataPaths.from_root(tmp_path)
    now = time.time()
    yesterday = dt.datetime.fromtimestamp(now, tz=dt.UTC).date() - dt.timedelta(days=1)
    write_trades(paths.market_parquet(), [(day_start_ms(yesterday) + 1_000, 1, "100", "1", False)], day=yesterday)
    paths.dagster_home.mkdir(parents=True)
    with dg.instance_for_test(temp_dir=str(paths.dagster_home)) as instance:
        register_symbols(instance, ["SOLUSDT", "ETHUSDT"])
        shown = gather_status(paths, CLOSED_PORT_URL, now=now)
    assert sorted({c.symbol for c in shown.certificates}) == ["ETHUSDT", "SOLUSDT"]
    (paths.dagster_home / "dagster.yaml").write_text("storage: [not, a, mapping]\n")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", str(paths.dagster_home))
        unavailable = gather_status(paths, CLOSED_PORT_URL, now=now)
    assert unavailable.compaction_error is not None
    assert {c.symbol for c in unavailable.certificates} == {"BTCUSDT"}, "the symbols with Parquet on disk"

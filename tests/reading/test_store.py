"""``hp.open(root).table / gaps / bars`` against direct reads of a store the real pipeline wrote: the simulator and
collector record across UTC midnight (one trade-id hole and one dropped connection injected), compaction writes
parts, the first day is consolidated and the second is not, features, certificates and books are built."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pytest

import harvest_pipeline as hp
from harvest_pipeline.reading.kinds import READABLE_KINDS
from harvest_pipeline.store.identity import DEDUP_KEYS
from tests.reading.conftest import SYMBOLS

UTC = dt.UTC


def direct(root: Path, kind: str, symbol: str) -> list[tuple]:
    """Every visible row of ``kind`` read straight from the files, deduplicated by hand (the docs' old recipe)."""
    keys = ", ".join(DEDUP_KEYS[kind])
    files = f"'{root}/parquet/market=usdm/date=*/symbol={symbol}/kind={kind}/*.parquet'"
    return duckdb.sql(
        f"SELECT {keys}, segment, line FROM read_parquet({files}, union_by_name = true) "
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY recv_time_ns, segment, line) = 1 ORDER BY ALL"
    ).fetchall()


def test_each_raw_kind_is_every_row_once_across_midnight_and_consolidation(recorded):
    root, midnight, _ = recorded
    store = hp.open(root)
    for kind in ("prices", "orderbook", "bookticker", "depth_snapshot", "events"):
        keys = ", ".join(DEDUP_KEYS[kind])
        for symbol in SYMBOLS:
            relation = store.table(kind, symbol)
            rows = relation.query("t", f"SELECT {keys}, segment, line FROM t ORDER BY ALL").fetchall()
            assert rows == direct(root, kind, symbol), (kind, symbol)
            dates = {row[0] for row in relation.query("t", "SELECT DISTINCT date FROM t").fetchall()}
            if kind in ("prices", "bookticker", "orderbook"):
                assert len(dates) == 2, f"{kind} {symbol}: both days"
    prices = store.table("prices", "BTCUSDT")
    assert prices.columns[-2:] == ["date", "symbol"]
    ids = [row[0] for row in prices.query("t", "SELECT agg_trade_id FROM t").fetchall()]
    assert ids == sorted(ids) and len(ids) == len(set(ids)), "in time order, each trade once"


def test_a_part_delivered_twice_is_still_every_row_once(recorded, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(recorded[0], root)
    store = hp.open(root)
    before = store.table("prices", "ETHUSDT").to_arrow_table()
    day = max(store.dates())
    [*_, part] = sorted((root / f"parquet/market=usdm/date={day}/symbol=ETHUSDT/kind=prices").glob("part-*.parquet"))
    shutil.copy(part, part.with_name(f"part-{part.stem[5:]}-again.parquet"))  # the same rows under another name
    again = store.table("prices", "ETHUSDT").to_arrow_table()
    assert again.num_rows == before.num_rows
    assert sorted(again.column("agg_trade_id").to_pylist()) == sorted(before.column("agg_trade_id").to_pylist())


def test_every_kind_is_readable_and_derived_kinds_are_one_day_each(recorded):
    root, _, _ = recorded
    store = hp.open(root)
    assert store.kinds() == list(READABLE_KINDS)
    for kind in store.kinds():
        table = store.table(kind).to_arrow_table()
        assert table.column_names[-2:] == ["date", "symbol"], kind
    assert store.table("features_1s", "BTCUSDT").count("*").fetchall() == [(2 * 86_400,)]
    assert store.table("liquidations").to_arrow_table().num_rows == 0, "no liquidations were recorded: an empty table"
    assert (
        store.table("prices_daily", "BTCUSDT")
        .to_arrow_table()
        .equals(store.table("prices", "BTCUSDT").to_arrow_table())
    )
    certificates = store.table("completeness", ["BTCUSDT", "ETHUSDT"]).to_arrow_table()
    assert certificates.num_rows == 2 * 2 * 2, "two streams, two days, two symbols"


def test_time_arguments_accept_datetimes_dates_and_iso_strings_in_utc(recorded):
    root, midnight, _ = recorded
    store = hp.open(root)
    first, second = store.dates()
    at_midnight = dt.datetime.fromtimestamp(midnight / 1000, tz=UTC)

    def count(**window) -> int:
        return store.table("prices", "BTCUSDT", **window).count("*").fetchall()[0][0]

    everything = count()
    before, after = count(end=at_midnight), count(start=at_midnight)
    assert before > 0 and after > 0 and before + after == everything
    assert count(start=first, end=first) == before, "a date as end is its whole day"
    assert count(start=second.isoformat()) == after
    assert count(end=at_midnight.isoformat().replace("+00:00", "Z")) == before
    assert count(end=at_midnight.replace(tzinfo=None)) == before, "a naive datetime is UTC"
    eastern = dt.timezone(dt.timedelta(hours=-5))
    assert count(start=at_midnight.astimezone(eastern)) == after, "an offset is converted"
    assert count(start=first - dt.timedelta(days=9), end=first - dt.timedelta(days=5)) == 0, "before the store"
    with pytest.raises(ValueError, match="is not after start"):
        count(start=second, end=first)
    with pytest.raises(ValueError, match="not an ISO date or time"):
        count(start="yesterday")


def test_unknown_kinds_symbols_and_markets_are_refused_naming_the_valid_ones(recorded):
    store = hp.open(recorded[0])
    with pytest.raises(ValueError, match=r"unknown kind 'price': readable kinds are prices, orderbook"):
        store.table("price")
    with pytest.raises(ValueError, match=r"unknown symbol\(s\) DOGEUSDT on usdm: the store has BTCUSDT, ETHUSDT"):
        store.table("prices", ["BTCUSDT", "DOGEUSDT"])
    with pytest.raises(ValueError, match="unknown market 'options'"):
        store.table("prices", market="options")
    with pytest.raises(ValueError, match="unknown symbol.*on spot: the store has none"):
        store.table("prices", "spot:BTCUSDT")
    with pytest.raises(ValueError, match="one market at a time"):
        store.table("prices", ["BTCUSDT"], market="usdm") and store.table("prices", ["spot:BTCUSDT"], market="usdm")
    with pytest.raises(ValueError, match="unknown bar interval '2m'"):
        store.bars("BTCUSDT", "2m")


def test_gaps_list_the_ledgers_interruptions_and_the_certificates_holes(recorded):
    root, _, accounting = recorded
    store = hp.open(root)
    btc = store.gaps("BTCUSDT").to_arrow_table().to_pylist()
    [skipped] = accounting["trades"]["BTCUSDT"]["skipped"]
    holes = [g for g in btc if g["source"] == "certificate" and g["first_id"] == skipped[0]]
    assert holes and holes[0]["last_id"] == skipped[1], btc
    assert any(g["source"] == "feed" and g["kind"] == "gap" and "aggTrade" in (g["stream"] or "") for g in btc), btc
    eth = store.gaps("ETHUSDT").to_arrow_table().to_pylist()
    assert any(g["source"] == "feed" and g["kind"] == "disconnect" for g in eth), eth
    times = [g["from_ms"] for g in eth if g["from_ms"] is not None]
    assert times == sorted(times)
    assert store.gaps("ETHUSDT", end=dt.datetime(2000, 1, 1, tzinfo=UTC)).to_arrow_table().num_rows == 0


def test_bars_follow_the_rules_against_a_recomputation_from_the_seconds(recorded):
    store = hp.open(recorded[0])
    seconds = store.table("features_1s", "BTCUSDT").to_arrow_table().to_pylist()
    bars = store.bars("BTCUSDT", "1m").to_arrow_table().to_pylist()
    assert len(bars) == 2 * 1440
    by_minute: dict[int, list[dict]] = {}
    for row in seconds:
        by_minute.setdefault(row["time_ms"] // 60_000 * 60_000, []).append(row)
    checked = 0
    for bar in bars:
        rows = by_minute[bar["time_ms"]]
        traded = [r for r in rows if r["open"] is not None]
        assert bar["seconds"] == 60 and bar["trade_count"] == sum(r["trade_count"] for r in rows)
        assert bar["gap_share"] == pytest.approx(sum(r["gap"] for r in rows) / 60)
        if not traded:
            assert bar["open"] is None and bar["vwap"] is None
            continue
        checked += 1
        assert (bar["open"], bar["close"]) == (
            traded[0]["open"],
            [r for r in rows if r["close"] is not None][-1]["close"],
        )
        assert bar["high"] == max(r["high"] for r in traded) and bar["low"] == min(r["low"] for r in traded)
        assert bar["volume"] == pytest.approx(sum(r["volume"] for r in rows))
        assert bar["vwap"] == pytest.approx(sum(r["quote_volume"] for r in rows) / sum(r["volume"] for r in rows))
        assert bar["cvd"] == [r["cvd"] for r in rows if r["cvd"] is not None][-1]
        assert bar["ofi"] == pytest.approx(sum(r["ofi"] or 0 for r in rows))
    assert checked >= 2, "the recorded minutes were compared"
    hours = store.bars("BTCUSDT", "1h", start=store.dates()[1]).to_arrow_table()
    assert hours.num_rows == 24 and sum(hours.column("trade_count").to_pylist()) == sum(
        r["trade_count"] for r in seconds if r["time_ms"] >= hours.column("time_ms")[0].as_py()
    )


def test_hp_open_without_a_root_reads_the_installation_settings(recorded, monkeypatch):
    root = recorded[0]
    monkeypatch.chdir(root.parent)
    monkeypatch.delenv("HARVEST_DATA_ROOT", raising=False)
    monkeypatch.delenv("HARVEST_SETTINGS_FILE", raising=False)
    store = hp.open()
    assert store.paths.root == root.resolve() and store.symbols() == list(SYMBOLS)
    monkeypatch.setenv("HARVEST_DATA_ROOT", str(root))
    monkeypatch.chdir("/")
    assert hp.open().table("prices", "BTCUSDT").count("*").fetchall()[0][0] > 0

"""``--symbols`` takes explicit symbols, ``top:N`` and ``all`` (and unions of them), validated once with errors that say
what is expected; the selectors are resolved by one pure function from the exchange's REST answers, and every reader
of the setting can tell a symbol from a selector."""

from __future__ import annotations

from pathlib import Path

import pytest

from harvest_pipeline.cli import build_parser
from harvest_pipeline.collector.config import CollectorConfig
from harvest_pipeline.settings import InstallationSettings, load_settings
from harvest_pipeline.symbols import SymbolSelection
from harvest_pipeline.up import plan_up


def info(*rows: tuple[str, str]) -> dict:
    """An exchangeInfo body with (symbol, status) rows."""
    return {"timezone": "UTC", "symbols": [{"symbol": symbol, "status": status} for symbol, status in rows]}


def tickers(**volumes: str) -> list[dict]:
    """A ticker/24hr body with the given quote volumes."""
    return [{"symbol": symbol, "quoteVolume": volume, "lastPrice": "1"} for symbol, volume in volumes.items()]


EXCHANGE = info(
    ("BTCUSDT", "TRADING"),
    ("ETHUSDT", "TRADING"),
    ("SOLUSDT", "TRADING"),
    ("XRPUSDT", "TRADING"),
    ("BTCUSDT_250328", "TRADING"),
    ("LUNAUSDT", "SETTLING"),
    ("NEWUSDT", "PENDING_TRADING"),
)
VOLUMES = tickers(
    BTCUSDT="9000000000.10",
    ETHUSDT="4000000000",
    SOLUSDT="900000000.5",
    XRPUSDT="900000000.5",
    BTCUSDT_250328="99999999999",
    LUNAUSDT="50000000000",
)


def test_flags_environment_and_files_take_symbols_selectors_and_their_union() -> None:
    settings = load_settings({"symbols": "btcusdt, TOP:5,top:3"}, {})
    assert settings.symbols == ("BTCUSDT", "top:5"), "written canonically: symbols upper, selectors lower, top:N once"
    assert settings.explicit_symbols == ("BTCUSDT",)
    assert settings.symbol_selection == SymbolSelection(("BTCUSDT",), top=5)
    assert load_settings(environ={"HARVEST_SYMBOLS": "all"}).symbol_selection == SymbolSelection((), all=True)
    assert load_settings(environ={"HARVEST_SYMBOLS": "ALL"}).explicit_symbols == (), "'all' is never a symbol"
    assert InstallationSettings().symbols == ("BTCUSDT",) == InstallationSettings().explicit_symbols
    assert CollectorConfig(symbols=("top:2", "ETHUSDT")).symbols == ("ETHUSDT", "top:2")


def test_a_settings_file_round_trips_selectors(tmp_path: Path) -> None:
    written = tmp_path / "harvest-settings.json"
    load_settings({"symbols": "SOLUSDT,top:5"}, {}).write(written)
    assert load_settings(settings_file=written, environ={}).symbol_selection == SymbolSelection(("SOLUSDT",), top=5)


@pytest.mark.parametrize(
    "value, message",
    [
        ("top:0", "top:N needs a whole number N >= 1, not '0'"),
        ("top:x", "top:N needs a whole number N >= 1, not 'x'"),
        ("top:", "top:N needs a whole number N >= 1, not ''"),
        ("top:-2", "top:N needs a whole number N >= 1, not '-2'"),
        ("bottom:3", "unknown symbol selector 'bottom:3': expected a symbol such as BTCUSDT, top:N"),
        ("BTC-USDT", "invalid symbol 'BTC-USDT'"),
        (",", "symbols: at least one is needed"),
    ],
)
def test_invalid_selectors_fail_once_saying_what_is_expected(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"invalid harvest settings \\(environment\\).*{message}"):
        load_settings(environ={"HARVEST_SYMBOLS": value})


def test_top_n_ranks_the_trading_contracts_by_quote_volume() -> None:
    selected = SymbolSelection((), top=3).select(EXCHANGE, VOLUMES)
    assert selected.symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDT"), "ties by name; SETTLING and delivery never chosen"
    assert selected.skipped == ("BTCUSDT_250328",)
    assert SymbolSelection((), top=50).select(EXCHANGE, VOLUMES).symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")


def test_all_takes_every_trading_contract_named_like_a_symbol() -> None:
    selected = SymbolSelection((), all=True).select(EXCHANGE)
    assert selected == SymbolSelection((), all=True).select(EXCHANGE, VOLUMES)
    assert selected.symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")
    assert selected.skipped == ("BTCUSDT_250328",)


def test_explicit_symbols_come_first_and_stay_whatever_the_exchange_says() -> None:
    selection = SymbolSelection(("LUNAUSDT", "SOLUSDT"), top=2)
    assert selection.select(EXCHANGE, VOLUMES).symbols == ("LUNAUSDT", "SOLUSDT", "BTCUSDT", "ETHUSDT")
    assert SymbolSelection(("LUNAUSDT",)).select(info()).symbols == ("LUNAUSDT",)
    assert not SymbolSelection(("LUNAUSDT",)).has_selectors


@pytest.mark.parametrize(
    "exchange_info, rows, message",
    [
        ({"code": -1000}, [], "exchangeInfo answer has no 'symbols' list"),
        ({"symbols": [{"status": "TRADING"}]}, [], "without a 'symbol'"),
        (EXCHANGE, {"symbol": "BTCUSDT"}, "ticker/24hr answer is not a list"),
        (EXCHANGE, [{"symbol": "BTCUSDT", "quoteVolume": "lots"}], "ticker/24hr row of BTCUSDT has no readable"),
    ],
)
def test_answers_not_shaped_like_binances_are_an_error_not_a_guess(exchange_info, rows, message) -> None:
    with pytest.raises(ValueError, match=message):
        SymbolSelection((), top=2).select(exchange_info, rows)


@pytest.mark.parametrize(
    "symbols, handed",
    [
        ("ETHUSDT,SOLUSDT", "ETHUSDT,SOLUSDT"),
        ("top:5", None),
        ("all", None),
        ("BTCUSDT,top:2", "BTCUSDT,ETHUSDT,BNBUSDT,XRPUSDT,ADAUSDT,SOLUSDT"),
    ],
)
def test_up_hands_the_simulator_its_default_instruments_when_a_selector_chooses(
    tmp_path: Path, symbols, handed
) -> None:
    plan = plan_up(build_parser().parse_args(["up", "--data", str(tmp_path), "--simulate", "--symbols", symbols]))
    simulator = next(child for child in plan.children if child.name == "simulator")
    given = simulator.argv[simulator.argv.index("--symbols") + 1] if "--symbols" in simulator.argv else None
    assert given == handed

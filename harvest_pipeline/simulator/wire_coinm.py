"""COIN-M formats, where they differ from USDⓈ-M's (``wire``).

COIN-M frames are the USDⓈ-M ones with ``ps`` (``Instrument.pair_field``), except that a kline's ``q``/``Q`` are
volumes in the base asset, not the quote. In REST the depth snapshot and open interest name the symbol and pair,
exchangeInfo says ``contractStatus`` and ``contractSize``, ``ticker/24hr`` reports ``baseVolume`` instead of
``quoteVolume``, and every per-symbol row names the pair. A base volume is the contracts' USD worth over the
volume-weighted average price of the minute (klines) or of the day (``ticker/24hr``).
"""

from __future__ import annotations

from typing import Any

from harvest_pipeline.simulator import wire
from harvest_pipeline.simulator.derivatives import MarkPrice
from harvest_pipeline.simulator.instruments import Instrument, divide_half_even, format_units
from harvest_pipeline.simulator.klines import DayStats, Kline

PERPETUAL = "PERPETUAL"
BASE_VOLUME_DECIMALS = 8


def kline(spec: Instrument, kline: Kline, event_ms: int, closed: bool) -> bytes:
    """A ``kline`` event: ``q`` and ``Q`` in the base asset (``"0"`` without trades, as every zero volume)."""
    base = base_volume(spec, kline.lots, kline.tick_lots) if kline.lots else "0"
    taker_base = base_volume(spec, kline.taker_buy_lots, kline.taker_buy_tick_lots) if kline.taker_buy_lots else "0"
    return wire.kline_with_volumes(spec, kline, event_ms, closed, base, taker_base)


def depth_snapshot(
    spec: Instrument, last_update_id: int, now_ms: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]]
) -> bytes:
    """The body of ``GET /dapi/v1/depth``."""
    return (
        f'{{"lastUpdateId":{last_update_id},"E":{now_ms},"T":{now_ms},"symbol":"{spec.symbol}","pair":"{spec.pair}",'
        f'"bids":[{wire.levels_text(spec, bids)}],"asks":[{wire.levels_text(spec, asks)}]}}'
    ).encode()


def exchange_info_symbol(spec: Instrument, status: str) -> dict[str, Any]:
    """One contract's entry in ``GET /dapi/v1/exchangeInfo`` (its status is ``contractStatus``)."""
    return {
        "symbol": spec.symbol,
        "pair": spec.pair,
        "contractType": PERPETUAL,
        "contractSize": spec.contract_size,
        "contractStatus": status,
        "baseAsset": spec.base_asset,
        "quoteAsset": spec.quote_asset,
        "marginAsset": spec.base_asset,
        "pricePrecision": spec.price_decimals,
        "quantityPrecision": spec.qty_decimals,
        "filters": wire.size_filters(spec),
    }


def open_interest_row(spec: Instrument, lots: int, now_ms: int) -> dict[str, Any]:
    """The body of ``GET /dapi/v1/openInterest`` (in contracts)."""
    return {
        "symbol": spec.symbol,
        "pair": spec.pair,
        "openInterest": spec.qty(lots),
        "contractType": PERPETUAL,
        "time": now_ms,
    }


def ticker_24hr_row(spec: Instrument, day: DayStats, now_ms: int) -> dict[str, Any]:
    """One contract's ``GET /dapi/v1/ticker/24hr`` statistics: USDⓈ-M's fields with the pair, and ``baseVolume``
    where USDⓈ-M has ``quoteVolume``."""
    row: dict[str, Any] = {"symbol": spec.symbol, "pair": spec.pair}
    for key, value in wire.ticker_24hr_row(spec, day, now_ms).items():
        if key == "quoteVolume":
            row["baseVolume"] = base_volume(spec, day.lots, day.tick_lots)
        elif key != "symbol":
            row[key] = value
    return row


def base_volume(spec: Instrument, lots: int, tick_lots: int) -> str:
    """The base asset worth of ``lots`` contracts traded for ``tick_lots`` (``sum(ticks * lots)``): contracts times
    contract size over the volume-weighted average price, with 8 decimals (halves to even)."""
    if not lots:
        return format_units(0, BASE_VOLUME_DECIMALS)
    # contracts * size / (tick_lots / lots) in price units, all scaled to whole units of 10**-8
    numerator = lots * lots * spec.step_units * spec.contract_size * 10 ** (BASE_VOLUME_DECIMALS + spec.price_decimals)
    denominator = tick_lots * spec.tick_units * 10**spec.qty_decimals
    return format_units(divide_half_even(numerator, denominator), BASE_VOLUME_DECIMALS)


def premium_index_row(spec: Instrument, mark: MarkPrice) -> dict[str, Any]:
    """One contract's ``GET /dapi/v1/premiumIndex`` answer: USDⓈ-M's with the pair after the symbol."""
    return {"symbol": spec.symbol, "pair": spec.pair, **wire.premium_index_row(spec, mark)}

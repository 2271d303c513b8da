"""COIN-M formats, where they differ from USDⓈ-M's (``wire``).

COIN-M frames are the USDⓈ-M ones with ``ps`` (``Instrument.pair_field``), except that a kline's ``q``/``Q`` are
volumes in the base asset, not the quote. In REST the depth snapshot and open interest name the symbol and pair,
(exchangeInfo's entries are in ``exchange_info``), ``ticker/24hr`` reports ``baseVolume`` instead of
``quoteVolume``, and every per-symbol row names the pair. A base volume is the contracts' USD worth over the
volume-weighted average price of the minute (klines), of the day (``ticker/24hr``) or of the trade (``trades``).
"""

from __future__ import annotations

from typing import Any

from harvest_pipeline.simulator import wire
from harvest_pipeline.simulator.derivatives import MarkPrice
from harvest_pipeline.simulator.instruments import Instrument, divide_half_even, format_units
from harvest_pipeline.simulator.klines import DayStats, Kline
from harvest_pipeline.simulator.market import Top
from harvest_pipeline.simulator.trade_history import IndividualTrade

PERPETUAL = "PERPETUAL"
BASE_VOLUME_DECIMALS = 8


def kline(spec: Instrument, kline: Kline, event_ms: int, closed: bool) -> bytes:
    """A ``kline`` event: ``q`` and ``Q`` in the base asset (``"0"`` without trades, as every zero volume)."""
    return wire.kline_with_volumes(spec, kline, event_ms, closed, *_base_volumes(spec, kline))


def kline_row(spec: Instrument, kline: Kline) -> list[Any]:
    """One row of ``GET /dapi/v1/klines``: its 8th and 11th values are base asset volumes, as the stream's."""
    return wire.kline_row_with_volumes(spec, kline, *_base_volumes(spec, kline))


def _base_volumes(spec: Instrument, kline: Kline) -> tuple[str, str]:
    """The base asset volume of ``kline`` and its taker-buy part (``"0"`` for none)."""
    base = base_volume(spec, kline.lots, kline.tick_lots) if kline.lots else "0"
    taker_base = base_volume(spec, kline.taker_buy_lots, kline.taker_buy_tick_lots) if kline.taker_buy_lots else "0"
    return base, taker_base


def depth_snapshot(
    spec: Instrument, last_update_id: int, now_ms: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]]
) -> bytes:
    """The body of ``GET /dapi/v1/depth``."""
    return (
        f'{{"lastUpdateId":{last_update_id},"E":{now_ms},"T":{now_ms},"symbol":"{spec.symbol}","pair":"{spec.pair}",'
        f'"bids":[{wire.levels_text(spec, bids)}],"asks":[{wire.levels_text(spec, asks)}]}}'
    ).encode()


def trade_row(spec: Instrument, trade: IndividualTrade) -> dict[str, Any]:
    """One row of ``GET /dapi/v1/trades`` and ``/historicalTrades``: ``baseQty`` where USDⓈ-M has ``quoteQty``."""
    base_qty = base_volume(spec, trade.lots, trade.price_ticks * trade.lots)
    return {
        ("baseQty" if key == "quoteQty" else key): base_qty if key == "quoteQty" else value
        for key, value in wire.trade_row(spec, trade).items()
    }


def book_ticker_row(spec: Instrument, top: Top, now_ms: int) -> dict[str, Any]:
    """One contract's ``GET /dapi/v1/ticker/bookTicker`` answer: USDⓈ-M's with the pair after the symbol."""
    return {"symbol": spec.symbol, "pair": spec.pair, **wire.book_ticker_row(spec, top, now_ms)}


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

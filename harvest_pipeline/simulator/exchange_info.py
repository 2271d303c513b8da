"""The ``exchangeInfo`` bodies of every market: the envelope (rate limits, filters, assets) and each symbol's entry,
with the fields and filters Binance documents, so a client's limits, precisions and order types are all set.

What the collector reads stays as it was: ``symbol``, the status (``status``, COIN-M's ``contractStatus``) and the
``tickSize``/``stepSize`` of PRICE_FILTER and LOT_SIZE. Values Binance sets per contract (margins, fees, dates) are its
BTCUSDT ones; sizes come from the instrument.
"""

from __future__ import annotations

from typing import Any

import orjson

from harvest_pipeline.simulator.instruments import Instrument
from harvest_pipeline.symbols import TRADING

ONBOARD_MS = 1_569_398_400_000
"""The ``onboardDate`` of every simulated contract (Binance's for BTCUSDT)."""
PERPETUAL_DELIVERY_MS = 4_133_404_800_000
"""The ``deliveryDate`` Binance gives a perpetual (2100-12-25)."""
FUTURES_ORDER_TYPES = [
    "LIMIT",
    "MARKET",
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
]
FUTURES_TIME_IN_FORCE = ["GTC", "IOC", "FOK", "GTX", "GTD"]
MARGIN_ASSETS = {"USDT": "-10000", "USDC": "-10000", "BTC": "-0.10000000", "BNB": "-0", "ETH": "-0"}
"""The margin assets of the USDⓈ-M ``assets`` list, with their ``autoAssetExchange`` threshold."""
MIN_NOTIONAL_FILTER = {"filterType": "MIN_NOTIONAL", "notional": "5"}
MAX_PRICE_FACTOR = 100
"""``maxPrice`` is this many times the instrument's start price."""
MAX_LIMIT_LOTS = 10**6
MAX_MARKET_LOTS = 10**5
"""``maxQty`` of LOT_SIZE and MARKET_LOT_SIZE, in lots."""


def usdm_symbol(spec: Instrument, status: str) -> dict[str, Any]:
    """One symbol's entry in ``GET /fapi/v1/exchangeInfo``, with every field Binance documents."""
    return {
        "symbol": spec.symbol,
        "pair": spec.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": PERPETUAL_DELIVERY_MS,
        "onboardDate": ONBOARD_MS,
        "status": status,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": spec.base_asset,
        "quoteAsset": spec.quote_asset,
        "marginAsset": spec.quote_asset,
        "pricePrecision": spec.price_decimals,
        "quantityPrecision": spec.qty_decimals,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "settlePlan": 0,
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [*size_filters(spec), *order_count_filters(), MIN_NOTIONAL_FILTER, percent_price_filter()],
        "orderTypes": FUTURES_ORDER_TYPES,
        "timeInForce": FUTURES_TIME_IN_FORCE,
    }


def size_filters(spec: Instrument) -> list[dict[str, Any]]:
    """The ``PRICE_FILTER``, ``LOT_SIZE`` and ``MARKET_LOT_SIZE`` filters of an exchangeInfo entry."""
    min_qty, step = spec.step_size, spec.step_size
    return [
        {
            "filterType": "PRICE_FILTER",
            "tickSize": spec.tick_size,
            "minPrice": spec.tick_size,
            "maxPrice": spec.price(spec.start_ticks * MAX_PRICE_FACTOR),
        },
        {"filterType": "LOT_SIZE", "stepSize": step, "minQty": min_qty, "maxQty": spec.qty(MAX_LIMIT_LOTS)},
        {"filterType": "MARKET_LOT_SIZE", "stepSize": step, "minQty": min_qty, "maxQty": spec.qty(MAX_MARKET_LOTS)},
    ]


def order_count_filters() -> list[dict[str, Any]]:
    """The ``MAX_NUM_ORDERS`` and ``MAX_NUM_ALGO_ORDERS`` filters of a futures entry."""
    return [{"filterType": "MAX_NUM_ORDERS", "limit": 200}, {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10}]


def percent_price_filter() -> dict[str, Any]:
    """The ``PERCENT_PRICE`` filter of a futures entry (orders within 5 % of the mark price)."""
    return {
        "filterType": "PERCENT_PRICE",
        "multiplierUp": "1.0500",
        "multiplierDown": "0.9500",
        "multiplierDecimal": "4",
    }


def rate_limits(weight_limit: int) -> list[dict[str, Any]]:
    """The futures ``rateLimits``: the request weight per minute, orders per minute and per 10 seconds."""
    return [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight_limit},
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
    ]


def usdm_exchange_info(symbols: list[dict[str, Any]], weight_limit: int, now_ms: int) -> bytes:
    """The body of ``GET /fapi/v1/exchangeInfo`` with the ``exchange_info_symbol`` entries ``symbols``."""
    return orjson.dumps(
        {
            "timezone": "UTC",
            "serverTime": now_ms,
            "futuresType": "U_MARGINED",
            "rateLimits": rate_limits(weight_limit),
            "exchangeFilters": [],
            "assets": [
                {"asset": asset, "marginAvailable": True, "autoAssetExchange": threshold}
                for asset, threshold in MARGIN_ASSETS.items()
            ],
            "symbols": symbols,
        }
    )


COINM_TIME_IN_FORCE = ["GTC", "IOC", "FOK", "GTX"]


def coinm_symbol(spec: Instrument, status: str) -> dict[str, Any]:
    """One contract's entry in ``GET /dapi/v1/exchangeInfo`` (its status is ``contractStatus``; no MIN_NOTIONAL)."""
    return {
        "symbol": spec.symbol,
        "pair": spec.pair,
        "contractType": "PERPETUAL",
        "deliveryDate": PERPETUAL_DELIVERY_MS,
        "onboardDate": ONBOARD_MS,
        "contractStatus": status,
        "contractSize": spec.contract_size,
        "marginAsset": spec.base_asset,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": spec.base_asset,
        "quoteAsset": spec.quote_asset,
        "pricePrecision": spec.price_decimals,
        "quantityPrecision": spec.qty_decimals,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "equalQtyPrecision": 4,
        "maxMoveOrderLimit": 10000,
        "triggerProtect": "0.0500",
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "liquidationFee": "0.015000",
        "marketTakeBound": "0.05",
        "filters": [*size_filters(spec), *order_count_filters(), percent_price_filter()],
        "orderTypes": FUTURES_ORDER_TYPES,
        "timeInForce": COINM_TIME_IN_FORCE,
    }


def coinm_exchange_info(symbols: list[dict[str, Any]], weight_limit: int, now_ms: int) -> bytes:
    """The body of ``GET /dapi/v1/exchangeInfo``: USDⓈ-M's without ``futuresType`` and ``assets``."""
    return orjson.dumps(
        {
            "timezone": "UTC",
            "serverTime": now_ms,
            "rateLimits": rate_limits(weight_limit),
            "exchangeFilters": [],
            "symbols": symbols,
        }
    )


BREAK = "BREAK"
"""The exchangeInfo status of a spot symbol that does not trade (delisted)."""
ASSET_PRECISION = 8
ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"]


def spot_symbol(spec: Instrument, status: str) -> dict[str, Any]:
    """One symbol's entry in ``GET /api/v3/exchangeInfo``; a symbol that does not trade is in status ``BREAK``."""
    return {
        "symbol": spec.symbol,
        "status": TRADING if status == TRADING else BREAK,
        "baseAsset": spec.base_asset,
        "baseAssetPrecision": ASSET_PRECISION,
        "quoteAsset": spec.quote_asset,
        "quotePrecision": ASSET_PRECISION,
        "quoteAssetPrecision": ASSET_PRECISION,
        "baseCommissionPrecision": ASSET_PRECISION,
        "quoteCommissionPrecision": ASSET_PRECISION,
        "orderTypes": ORDER_TYPES,
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            *size_filters(spec),
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "5",
                "bidMultiplierDown": "0.2",
                "askMultiplierUp": "5",
                "askMultiplierDown": "0.2",
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],  # fmt: skip
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def spot_exchange_info(symbols: list[dict[str, Any]], weight_limit: int, now_ms: int) -> bytes:
    """The body of ``GET /api/v3/exchangeInfo``: spot's rate limits (weight, orders, raw requests), no assets."""
    return orjson.dumps(
        {
            "timezone": "UTC",
            "serverTime": now_ms,
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight_limit},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": symbols,
        }
    )

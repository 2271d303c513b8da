"""harvest: records Binance market data 24x7 and turns it into analysis-ready Parquet and a per-second features table.

``import harvest_pipeline as hp; store = hp.open("data")`` reads the store (``harvest_pipeline.reading``); the rest of
the package is imported by what runs it (collector, Dagster, CLI), so ``hp.open`` loads DuckDB only when called.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harvest_pipeline.reading import Store


def open(root: str | os.PathLike[str] | None = None, market: str | None = None) -> Store:  # noqa: A001 - hp.open
    """``harvest_pipeline.reading.open``: the store of the installation at ``root`` (see there)."""
    from harvest_pipeline.reading import open as open_store

    return open_store(root, market)

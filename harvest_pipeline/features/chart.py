"""PNG charts of one day x symbol, shared by the ``features_1s`` asset (``chart.png``) and ``harvest plot``.

- ``render_features_chart``: price, CVD, OFI and fusion from ``features_1s`` (feed-gap seconds shaded red,
  unrecorded ones grey), plus the book's depth when the day's ``book_1s`` exists (invalid seconds shaded orange).
- ``render_book_chart``: best bid and ask (level 1), spread and depth from ``book_1s`` (invalid seconds shaded orange).

The renderers are pure (tables in, PNG bytes out). Every chart is ``WIDTH_IN`` wide and ``PANEL_HEIGHT_IN`` high per
panel at ``DPI``: 880 px wide, 160 px per panel, so a day's chart always has the same size (features 880x640, with the
book panel 880x800; book_1s 880x480). ``read_columns`` and ``read_day_book_depth`` read only the columns drawn.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harvest_pipeline.book import book_file
from harvest_pipeline.features.sources import BOOK_KIND
from harvest_pipeline.schema import PRICE

if TYPE_CHECKING:
    from matplotlib.axes import Axes

WIDTH_IN = 11
PANEL_HEIGHT_IN = 2
DPI = 80
FEATURES_PANELS = (("close", "price (close)"), ("cvd", "CVD"), ("ofi", "OFI"), ("fusion", "fusion"))
FEATURES_CHART_COLUMNS = ("second_of_day", "gap", "recorded", *(column for column, _ in FEATURES_PANELS))
"""The ``features_1s`` columns ``render_features_chart`` draws."""
BOOK_DEPTH_COLUMNS = ("second_of_day", "valid", "bid_qtys", "ask_qtys")
"""The ``book_1s`` columns of the depth panel (what ``render_features_chart`` needs of the book)."""
BOOK_CHART_COLUMNS = (*BOOK_DEPTH_COLUMNS, "bid_prices", "ask_prices")
"""The ``book_1s`` columns ``render_book_chart`` draws."""
GAP_COLOR, UNRECORDED_COLOR, INVALID_BOOK_COLOR = "red", "grey", "orange"
BID_COLOR, ASK_COLOR = "tab:green", "tab:purple"


@dataclass(frozen=True)
class Panel:
    """One row of a chart: lines over the hours of the day, and seconds shaded behind them."""

    label: str
    hours: np.ndarray
    lines: Mapping[str, tuple[np.ndarray, str | None]]
    """Legend label (shown when there are several) -> (values, colour or None for the default)."""
    shades: tuple[tuple[np.ndarray, str], ...]
    """(flagged seconds, colour), drawn in this order."""


def read_columns(path: Path, columns: Sequence[str]) -> pa.Table | None:
    """``columns`` of one Parquet file, or None when it does not exist."""
    try:
        return pq.read_table(path, columns=list(columns))
    except FileNotFoundError:
        return None


def read_day_book_depth(parquet_root: Path, day: dt.date, symbol: str) -> pa.Table | None:
    """What the depth panel of a features chart needs from the day's ``book_1s``; None when the book is not built."""
    return read_columns(book_file(parquet_root, day, symbol, BOOK_KIND), BOOK_DEPTH_COLUMNS)


def render_features_chart(features: pa.Table, title: str, book: pa.Table | None = None) -> bytes:
    """Price, CVD, OFI and fusion over the day's hours, gap seconds red and unrecorded ones grey, and below them the
    depth of ``book`` (``BOOK_DEPTH_COLUMNS`` of the day's ``book_1s``) when given; returns PNG bytes."""
    hours = _hours(features)
    shades = ((~_flags(features, "recorded"), UNRECORDED_COLOR), (_flags(features, "gap"), GAP_COLOR))
    panels = [
        Panel(label, hours, {column: (_floats(features, column), None)}, shades) for column, label in FEATURES_PANELS
    ]
    if book is not None:
        panels.append(_depth_panel(book))
    return _render(panels, title)


def render_book_chart(book: pa.Table, title: str) -> bytes:
    """Best bid and ask, spread and depth of ``book`` (``BOOK_CHART_COLUMNS`` of a ``book_1s`` day), invalid seconds
    shaded; returns PNG bytes."""
    hours = _hours(book)
    shades = ((~_flags(book, "valid"), INVALID_BOOK_COLOR),)
    best_bid, best_ask = _level_one(book.column("bid_prices")), _level_one(book.column("ask_prices"))
    spread = np.round(best_ask - best_bid, PRICE.scale)  # exact decimals: no float noise below their scale
    panels = [
        Panel("best bid / ask", hours, {"bid": (best_bid, BID_COLOR), "ask": (best_ask, ASK_COLOR)}, shades),
        Panel("spread (ask - bid)", hours, {"spread": (spread, None)}, shades),
        _depth_panel(book),
    ]
    return _render(panels, title)


def _depth_panel(book: pa.Table) -> Panel:
    """Total quantity of the top levels of each side at each second's end, the ask side drawn below zero (a day of
    seconds is a band of ink: mirrored, neither side hides the other)."""
    lines = {
        "bid": (_level_sum(book.column("bid_qtys")), BID_COLOR),
        "ask": (-_level_sum(book.column("ask_qtys")), ASK_COLOR),
    }
    return Panel("depth top 20\n(bid +, ask -)", _hours(book), lines, ((~_flags(book, "valid"), INVALID_BOOK_COLOR),))


def _hours(table: pa.Table) -> np.ndarray:
    return table.column("second_of_day").to_numpy() / 3600


def _flags(table: pa.Table, column: str) -> np.ndarray:
    return table.column(column).to_numpy(zero_copy_only=False).astype(bool)


def _floats(table: pa.Table, column: str) -> np.ndarray:
    return table.column(column).to_numpy(zero_copy_only=False).astype(float)


def _level_values(levels: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(row, value as float) of every level of a list<decimal> column; null rows have none."""
    lengths = pc.fill_null(pc.list_value_length(levels), 0).to_numpy()
    values = pc.cast(pc.list_flatten(levels), pa.float64()).to_numpy()
    return np.repeat(np.arange(len(lengths)), lengths), values


def _level_one(levels: pa.ChunkedArray) -> np.ndarray:
    """The first level of each row (the best price), NaN where a row has none."""
    rows, values = _level_values(levels)
    first = np.ones(len(rows), dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    out = np.full(len(levels), np.nan)
    out[rows[first]] = values[first]
    return out


def _level_sum(levels: pa.ChunkedArray) -> np.ndarray:
    """The sum of each row's levels, NaN where a row is null."""
    rows, values = _level_values(levels)
    # float even when no row has a level (numpy's bincount of nothing is integer zeros)
    out = np.bincount(rows, weights=values, minlength=len(levels)).astype(float)
    out[pc.is_null(levels).to_numpy(zero_copy_only=False)] = np.nan
    return out


def _render(panels: list[Panel], title: str) -> bytes:
    """Draw ``panels`` one below the other over 0..24 h UTC; returns PNG bytes of the documented size."""
    # imported here, not at module level: matplotlib costs ~0.35 s of start-up in every process that loads the code
    # location (code server, each run worker), and only the features asset and `harvest plot` draw
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = (WIDTH_IN, PANEL_HEIGHT_IN * len(panels))
    figure, axes = plt.subplots(len(panels), 1, figsize=size, sharex=True, dpi=DPI, squeeze=False)
    try:
        for axis, panel in zip(axes[:, 0], panels, strict=True):
            _draw_panel(axis, panel)
        axis.set_xlabel("hour of day (UTC)")
        axis.set_xlim(0, 24)
        axis.set_xticks(np.arange(0, 25, 3))
        figure.suptitle(title)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def _draw_panel(axis: Axes, panel: Panel) -> None:
    for name, (values, color) in panel.lines.items():
        axis.plot(panel.hours, values, linewidth=0.6, color=color, label=name)
    if len(panel.lines) > 1:
        axis.legend(loc="upper right", fontsize=7)
    axis.set_ylabel(panel.label)
    for flagged, color in panel.shades:
        if flagged.any():
            axis.fill_between(
                panel.hours, 0, 1, where=flagged, color=color, alpha=0.25, transform=axis.get_xaxis_transform()
            )

"""`harvest backfill --date D --symbol S [--until D2]`: heal the aggTrade holes of past days from REST.

A one-line progress bar goes to stderr (redrawn in place on a terminal, one plain line every ``PLAIN_EVERY_S`` seconds
otherwise), the summary to stdout. What the run fetched is in one sealed segment that the compaction sensor picks up;
run it again after that compaction and it finds nothing left to fill.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from harvest_pipeline.backfill.days import DEFAULT_WEIGHT_PER_MINUTE, HealProgress, HealReport, heal_days
from harvest_pipeline.backfill.holes import AGG_TRADES_WEIGHT
from harvest_pipeline.features.command import symbol_name, utc_date
from harvest_pipeline.markets import MARKETS
from harvest_pipeline.settings import load_settings

PLAIN_EVERY_S = 10.0
REDRAW_EVERY_S = 0.2
MAX_REASONS_SHOWN = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``backfill`` subcommand."""
    parser = subparsers.add_parser("backfill", help="fill the aggTrade holes of past days from REST")
    parser.add_argument("--date", required=True, type=utc_date, help="first UTC date, YYYY-MM-DD")
    parser.add_argument("--until", type=utc_date, help="last UTC date, YYYY-MM-DD (default: --date)")
    parser.add_argument("--symbol", required=True, type=symbol_name, help="symbol as recorded, e.g. BTCUSDT")
    parser.add_argument(
        "--weight-per-minute",
        type=weight_per_minute,
        default=DEFAULT_WEIGHT_PER_MINUTE,
        help=f"REST request weight to spend per minute (default {DEFAULT_WEIGHT_PER_MINUTE} of Binance's 2400)",
    )
    parser.add_argument(
        "--retry-declared", action="store_true", help="also retry holes an earlier backfill declared unfillable"
    )
    parser.add_argument("--data-root", "--data", dest="data_root", help="data root (HARVEST_DATA_ROOT; default ./data)")
    parser.add_argument("--market", choices=sorted(MARKETS), help="the symbol's market (HARVEST_MARKET; default usdm)")
    parser.add_argument("--rest-base", help="REST base URL (HARVEST_REST_BASE; default the market's, on USDⓈ-M "
                        "https://fapi.binance.com)")  # fmt: skip
    parser.set_defaults(run=run)


def weight_per_minute(text: str) -> int:
    """``--weight-per-minute``: a whole number, at least one request's weight."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < AGG_TRADES_WEIGHT:
        raise argparse.ArgumentTypeError(
            f"invalid weight per minute {text!r}: expected a whole number >= {AGG_TRADES_WEIGHT} (one request)"
        )
    return value


def run(args: argparse.Namespace) -> int:
    """Heal the days and print the summary; 2 on bad input, 1 when the data cannot be written."""
    last_day = args.until or args.date
    if last_day < args.date:
        print(f"harvest backfill: --until {last_day} is before --date {args.date}", file=sys.stderr)
        return 2
    try:
        settings = load_settings({"data_root": args.data_root, "rest_base": args.rest_base, "market": args.market})
    except ValueError as exc:
        print(f"harvest backfill: {exc}", file=sys.stderr)
        return 2
    bar = ProgressBar(sys.stderr)
    try:
        report = heal_days(
            settings.paths(),
            args.symbol,
            args.date,
            last_day,
            settings.rest_base,
            args.weight_per_minute,
            progress=bar.update,
            retry_declared=args.retry_declared,
            market=settings.exchange,
        )
    except OSError as exc:
        bar.finish()
        print(f"harvest backfill: cannot write the backfill segment: {exc}", file=sys.stderr)
        return 1
    bar.finish()
    print(summarize(report))
    return 0


class ProgressBar:
    """One line of progress on ``stream``: redrawn in place on a terminal, a plain line now and then otherwise."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.tty = stream.isatty()
        self._last_shown = 0.0
        self._last_day = ""
        self._width = 0

    def update(self, progress: HealProgress) -> None:
        """Show ``progress`` if it is time to (always at a new day)."""
        now = time.monotonic()
        new_day = str(progress.day) != self._last_day
        if not new_day and now - self._last_shown < (REDRAW_EVERY_S if self.tty else PLAIN_EVERY_S):
            return
        self._last_shown, self._last_day = now, str(progress.day)
        line = progress_line(progress)
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the redrawn line."""
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()


def progress_line(progress: HealProgress) -> str:
    """``BTCUSDT 2026-03-02 (day 1/3) [#####-----] 52% holes 3/7 ids 5,200/10,000 | 14 requests ...``."""
    filled = round(progress.day_fraction * 20)
    waiting = f" | waiting {progress.waiting_s:.0f} s" if progress.waiting_s >= 0.5 else ""
    return (
        f"{progress.symbol} {progress.day} (day {progress.day_number}/{progress.days}) "
        f"[{'#' * filled}{'-' * (20 - filled)}] {progress.day_fraction:4.0%} "
        f"holes {progress.holes_done}/{progress.holes} ids {progress.ids_done:,}/{progress.ids:,} | "
        f"{progress.requests} requests, weight {progress.weight_used:,}, {progress.trades_stored:,} trades stored, "
        f"{progress.ids_declared:,} ids declared{waiting}"
    )


def summarize(report: HealReport) -> str:
    """What the run did, for a person: totals, the declared ids with reasons, the segment to compact."""
    days = f"{report.days[0]}..{report.days[-1]}" if len(report.days) > 1 else str(report.days[0])
    lines = [
        f"backfill {report.symbol} {days}: {report.holes_considered} holes to fill, {report.requests} requests "
        f"(weight {report.weight_used:,}), {report.trades_stored:,} trades stored, "
        f"{report.ids_declared:,} ids declared unfillable"
    ]
    for declared in report.declared[:MAX_REASONS_SHOWN]:
        lines.append(f"  declared {declared.day} ids {declared.first_id}..{declared.last_id}: {declared.reason}")
    if len(report.declared) > MAX_REASONS_SHOWN:
        lines.append(f"  and {len(report.declared) - MAX_REASONS_SHOWN} more declared ranges")
    if report.holes_unlisted:
        lines.append(
            f"  {report.holes_unlisted} more holes than the certificates list: run again once this segment is compacted"
        )
    if report.segment is None:
        lines.append("  nothing to fill: no segment written")
    else:
        lines.append(f"  segment {report.segment} sealed; the compaction sensor will pick it up")
    return "\n".join(lines)

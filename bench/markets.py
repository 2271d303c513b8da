"""Compaction speed of each market's message layouts, against USDⓈ-M in the same run.

    python bench/markets.py [--frames 500000] [--repeat 3]

One stream of realistic mixed traffic (bookTicker, aggTrade, 5-30 level depth diffs: ``tests.compaction.frames``) is
written three times, as each market sends it: USDⓈ-M as generated; COIN-M with ``ps`` and ``BTCUSD_PERP``-style
symbols; spot without ``pu``/``T`` on diffs, without ``e``/``E``/``T`` on book tickers and with ``M`` on trades. Each
segment is compacted ``--repeat`` times (best kept) and reported as rows/s and as a ratio to USDⓈ-M's rows/s of the
same run.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from harvest_pipeline import segments  # noqa: E402
from harvest_pipeline.compaction import compact_segment, reconcile  # noqa: E402
from harvest_pipeline.paths import DataPaths  # noqa: E402
from tests.compaction.frames import MS, SegmentBuilder, TrafficMix, as_coinm, as_spot  # noqa: E402

START_MS = 1_767_225_600_000


def make_segment(root: Path, market: str, frames: int) -> segments.SealedSegment:
    convert = {"usdm": lambda s, r: (s, r), "coinm": as_coinm, "spot": as_spot}[market]
    builder = SegmentBuilder(root, opened_at_ns=START_MS * MS, collector_id=f"bench.{market}", market=market)
    converted = [(*convert(stream, raw), event_ms) for stream, raw, event_ms in TrafficMix().frames(frames)]
    builder.control("connect", START_MS, url="ws://bench/stream", streams=sorted({s for s, _, _ in converted}))
    for stream, raw, event_ms in converted:
        builder.frame(stream, raw, event_ms + 4)
    return builder.seal()


def best_compaction(sealed: segments.SealedSegment, root: Path, repeat: int) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for attempt in range(repeat):
        started = time.perf_counter()
        report = compact_segment(sealed, DataPaths.from_root(root / f"out{attempt}"))
        best = min(best, time.perf_counter() - started)
        assert reconcile(report).passed, reconcile(report).detail
        rows = report.lines_read - report.control_records - report.quarantined
    return best, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for market in ("usdm", "coinm", "spot"):
            root = Path(tmp) / market
            sealed = make_segment(root, market, args.frames)
            seconds, rows = best_compaction(sealed, root, args.repeat)
            results[market] = rows / seconds
            print(f"{market:6s} {rows:>9,} rows in {seconds:6.2f} s = {rows / seconds:>10,.0f} rows/s", flush=True)
        for market in ("coinm", "spot"):
            print(f"{market} / usdm rows/s ratio: {results[market] / results['usdm']:.2f}")


if __name__ == "__main__":
    main()

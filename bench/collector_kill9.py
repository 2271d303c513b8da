"""kill -9 loop: the collector killed at random moments, restarted, and its output checked, >= 100 cycles.

Each cycle starts ``harvest collect`` against ``harvest simulate``, waits for frames, kills it with SIGKILL at a
random moment and restarts it (the restart seals what the killed process left open). Every sealed segment must match
its sidecar (hash, line count), sequence numbers per connection must have no holes (only a tail can be lost), and
the lost tail is measured. Baseline: the 1 s flush requirement the tail is compared against.

Run from the repository root: ``python -m bench.collector_kill9 [--cycles 100]``
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from tests.collector.harness import run_kill_loop


def main() -> None:
    """Run the loop and print what it found."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_kill_loop(Path(tmp), args.cycles, random.Random(args.seed))
    tails_ms = sorted(ns / 1e6 for ns in result.tail_loss_ns)
    print(
        f"{result.cycles} kill -9 cycles in {time.monotonic() - started:.0f} s: {result.sealed_segments} sealed "
        f"segments, all valid against their sidecars; {result.frames:,} frames sealed"
    )
    print(
        f"open segments left by kills: {result.open_segments_at_kill}, "
        f"recovered on restart: {result.recovered_records}; "
        f"connections with a sequence hole: {len(result.holes)}"
    )
    print(
        f"lost tail per kill (kill time - last sealed record): median {statistics.median(tails_ms):.1f} ms, "
        f"max {tails_ms[-1]:.1f} ms (baseline: flush requirement 1000 ms)"
    )


if __name__ == "__main__":
    main()

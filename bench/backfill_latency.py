"""Websocket frame latency during a large REST trade backfill, beside windows without one, in one run.

Requirement: the p99 websocket frame latency during a large backfill stays within 2x its value without backfill.

``harvest simulate`` (its own process, ``--rate`` on BTCUSDT, ETHUSDT and SOLUSDT) feeds ``harvest collect`` (its own
process, live backfill on, the whole request-weight budget given to the backfill). The default budget, 24,000 weight
a minute, is 20 pages a second: ten times what Binance allows a whole IP (2,400) and forty times the collector's
default backfill share (600, a page every 2 s). ``--weight-per-minute 1000000`` sends pages back to back (~250/s),
the most the backfill can load the event loop. Each round is, in this order:

- baseline: ``--window`` seconds of normal flow, nothing to backfill;
- hole (not measured): every aggTrade and bookTicker stream stalled for ``--stall`` seconds while the market runs at
  ``--burst`` times its rate, so up to ~100,000 trade ids per symbol (the simulator's REST history) are missed
  while the collector idles; the burst ends a second before the streams resume;
- backfill: the streams resume, the collector sees the aggTrade id jumps and fetches the holes page by page
  (``/fapi/v1/aggTrades``, 1,000 trades a page) while the streams flow as in the baseline.

Rounds repeat (baseline, backfill, baseline, backfill ...) so the shared host's noise falls on both kinds of window.

Frame latency is the receive time ``t`` the collector stamps on a frame (the socket read that brought it, just before
the frame is queued for the writer) minus the frame's event time ``E``, which the simulator takes from its wall clock
at the 10 ms tick that builds the frame and queues it to the socket (whole milliseconds, so 0-1 ms too high). It is
read back from the sealed segments for every aggTrade, bookTicker and depth frame. A backfill window spans the
round's ``backfill`` records: from the first request (``requested_ns``) to the last answer (``t``).

Same-run control: a probe client in this process reads btcusdt@aggTrade from the same simulator and measures its own
receive time minus ``E``. The simulator answers the backfill's pages on the event loop that sends the frames (on the
exchange, REST is served elsewhere), so a rise the probe sees too is the simulator's, not the collector's.

Run from the repository root: ``python bench/backfill_latency.py [--rounds 6] [--quick]``; exit status 1 on FAIL.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from harvest_pipeline.segments import iter_records, list_sealed_segments  # noqa: E402
from tests.collector.harness import CollectorProcess, SimulatorProcess, wait_for  # noqa: E402

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
STALLED_KINDS = ("aggTrade", "bookTicker")
PROBE_STREAM = "btcusdt@aggTrade"
REQUIRED_RATIO = 2.0
POLL_S = 0.2
"""How often the collector's metrics are read, in every window alike (a scrape costs its event loop a little)."""
SETTLE_S = 1.0
"""Quiet time after a burst ends and after a backfill ends, before the next window."""
BACKFILL_TIMEOUT_S = 300.0
BACKFILL_REQUESTS = "harvest_backfill_requests_total"
HOLES_PENDING = "harvest_backfill_holes_pending"
EVENT_TIME = re.compile(rb'"E":(\d+)')


def start_simulator(workdir: Path, rate: float, weight_per_minute: int) -> SimulatorProcess:
    """``harvest simulate`` on ``SYMBOLS`` with this run's REST weight limit and room to queue a burst's frames."""
    extra = ("--weight-limit", str(weight_per_minute), "--send-queue", "100000")
    return SimulatorProcess(workdir, ",".join(SYMBOLS), rate, extra_args=extra)


def start_collector(workdir: Path, sim: SimulatorProcess, weight_per_minute: int) -> CollectorProcess:
    """``harvest collect`` with production flush and segment timing, the backfill owning the whole REST budget."""
    return CollectorProcess(
        workdir,
        sim,
        symbols=SYMBOLS,
        watchdog_s=600.0,
        fsync_interval_s=1.0,
        segment_max_age_s=60.0,
        rest_weight_per_minute=weight_per_minute,
        backfill_weight_share=1.0,
    )


def scrape(collector: CollectorProcess) -> dict[str, float]:
    """Every metric of the collector, summed over its label sets."""
    with urllib.request.urlopen(f"{collector.info['metrics_url']}/metrics", timeout=5) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for name, value in re.findall(r"^(\w+)(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE):
        totals[name] = totals.get(name, 0.0) + float(value)
    return totals


class Probe(threading.Thread):
    """A bare websocket client of the simulator recording ``(receive ns, receive ms - E)`` per frame."""

    def __init__(self, ws_base: str):
        super().__init__(daemon=True)
        self.url = f"{ws_base}/market/stream?streams={PROBE_STREAM}"
        self.samples: list[tuple[int, float]] = []
        self._stopping = threading.Event()

    def run(self) -> None:
        with connect(self.url, compression=None, max_size=None, proxy=None) as ws:
            while not self._stopping.is_set():
                try:
                    message = ws.recv(timeout=0.2, decode=False)
                except TimeoutError:
                    continue
                received_ns = time.time_ns()
                match = EVENT_TIME.search(message)
                if match:
                    self.samples.append((received_ns, received_ns / 1e6 - int(match[1])))

    def stop(self) -> None:
        """Close the connection and wait for the thread."""
        self._stopping.set()
        if self.is_alive():
            self.join(10)


@dataclass
class Round:
    """Wall-clock bounds (ns) of one round: its baseline window, then its hole and backfill until ``until``."""

    baseline: tuple[int, int]
    until: int


def log_tail(path: Path) -> str:
    """The end of a process log, for error messages."""
    return path.read_text(errors="replace")[-3000:]


def all_streams_live(collector: CollectorProcess) -> bool:
    """Whether every subscribed stream has delivered frames on its current connection."""
    streams = collector.health()[1]["streams"]
    return all(stream["state"] == "live" for stream in streams.values())


def watch(collector: CollectorProcess, seconds: float) -> None:
    """Sleep ``seconds`` while scraping the metrics every ``POLL_S``, as the wait for a backfill's end does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        scrape(collector)
        time.sleep(POLL_S)


def run_round(sim: SimulatorProcess, collector: CollectorProcess, args: argparse.Namespace, workdir: Path) -> Round:
    """Baseline window, hole, backfill (until the collector has no hole left), settle."""
    baseline_from = time.time_ns()
    watch(collector, args.window)
    baseline = (baseline_from, time.time_ns())
    requests_before = scrape(collector).get(BACKFILL_REQUESTS, 0.0)
    for symbol in SYMBOLS:
        for kind in STALLED_KINDS:
            sim.fault({"fault": "stall_stream", "stream": f"{symbol.lower()}@{kind}", "seconds": args.stall})
    sim.fault({"fault": "burst", "seconds": max(0.0, args.stall - SETTLE_S), "multiplier": args.burst})
    time.sleep(args.stall)
    deadline = time.monotonic() + BACKFILL_TIMEOUT_S
    while True:
        metrics = scrape(collector)
        if metrics.get(BACKFILL_REQUESTS, 0.0) > requests_before and metrics.get(HOLES_PENDING) == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the backfill did not start or finish within {BACKFILL_TIMEOUT_S:.0f} s; collector log:\n"
                + log_tail(workdir / "collector.log")
            )
        time.sleep(POLL_S)
    watch(collector, SETTLE_S)
    return Round(baseline, time.time_ns())


@dataclass
class Recorded:
    """What the sealed segments say: every frame's ``(t, latency ms)`` and every fetched page's bounds and trades."""

    frame_ns: np.ndarray
    latency_ms: np.ndarray
    pages: list[tuple[int, int, int]]
    """``(requested_ns, answered_ns, trades stored)`` per ``backfill`` request record."""
    write_losses: int


def read_segments(sealed_root: Path) -> Recorded:
    """Frame latencies and backfill pages of every sealed segment."""
    frame_ns: list[int] = []
    latency_ms: list[float] = []
    pages: list[tuple[int, int, int]] = []
    write_losses = 0
    for segment in list_sealed_segments(sealed_root):
        for _, record in iter_records(segment.path):
            if not isinstance(record, dict):
                raise RuntimeError(f"{segment.path} holds an unreadable line: {record}")
            kind = record["k"]
            if kind == "frame":
                frame_ns.append(record["t"])
                latency_ms.append(record["t"] / 1e6 - record["f"]["data"]["E"])
            elif kind == "backfill" and record.get("requested_ns") is not None:
                pages.append((record["requested_ns"], record["t"], record["count"]))
            elif kind == "write_loss":
                write_losses += 1
    return Recorded(np.array(frame_ns), np.array(latency_ms), pages, write_losses)


@dataclass
class Window:
    """The latencies (ms) of the frames received within some wall-clock spans, and how long the spans last."""

    seconds: float
    latencies: np.ndarray

    @classmethod
    def of(cls, times_ns: np.ndarray, latency_ms: np.ndarray, spans: list[tuple[int, int]]) -> Window:
        """The samples whose receive time falls in any of ``spans``."""
        inside = np.zeros(len(times_ns), dtype=bool)
        for lo, hi in spans:
            inside |= (times_ns >= lo) & (times_ns <= hi)
        return cls(sum(hi - lo for lo, hi in spans) / 1e9, latency_ms[inside])

    def p(self, q: float) -> float:
        """The ``q``-th percentile in ms."""
        return float(np.percentile(self.latencies, q)) if len(self.latencies) else float("nan")

    def row(self, label: str) -> str:
        """One row of the summary table."""
        rate = len(self.latencies) / self.seconds if self.seconds else 0.0
        high = float(self.latencies.max()) if len(self.latencies) else float("nan")
        return (
            f"  {label:<32} {len(self.latencies):>8,} {self.seconds:>6.2f} {rate:>9,.0f} "
            f"{self.p(50):>7.2f} {self.p(99):>7.2f} {high:>7.2f}"
        )


@dataclass
class Backfill:
    """One round's backfill as its segments record it."""

    span: tuple[int, int]
    """From the first request to the last answer (ns)."""
    pages: int
    trades: int

    @classmethod
    def of(cls, pages: list[tuple[int, int, int]]) -> Backfill:
        """The backfill made of these request records."""
        span = min(requested for requested, _, _ in pages), max(answered for _, answered, _ in pages)
        return cls(span, len(pages), sum(stored for _, _, stored in pages))

    @property
    def seconds(self) -> float:
        """How long pages were being fetched."""
        return (self.span[1] - self.span[0]) / 1e9


def round_backfills(rounds: list[Round], recorded: Recorded) -> list[Backfill]:
    """Each round's backfill: the request records made between the end of its baseline and its end."""
    backfills = []
    for number, one in enumerate(rounds, 1):
        pages = [page for page in recorded.pages if one.baseline[1] <= page[0] <= one.until]
        if not pages:
            raise RuntimeError(f"round {number} has no backfill request record in the sealed segments")
        backfills.append(Backfill.of(pages))
    return backfills


def print_rounds(rounds: list[Round], backfills: list[Backfill], frames: tuple[np.ndarray, np.ndarray]) -> None:
    """One line per round: its baseline and its backfill side by side."""
    print("round  baseline frames  p99 ms | backfill pages   trades      s  pages/s  frames  p99 ms | p99 ratio")
    for number, (one, backfill) in enumerate(zip(rounds, backfills, strict=True), 1):
        base, during = Window.of(*frames, [one.baseline]), Window.of(*frames, [backfill.span])
        print(f"{number:>5} {len(base.latencies):>16,} {base.p(99):>7.2f} | {backfill.pages:>14} "
              f"{backfill.trades:>8,} {backfill.seconds:>6.2f} {backfill.pages / backfill.seconds:>8.0f} "
              f"{len(during.latencies):>7,} {during.p(99):>7.2f} | {during.p(99) / base.p(99):>9.2f}")  # fmt: skip


def report(rounds: list[Round], recorded: Recorded, probe: Probe) -> bool:
    """Print per-round and pooled figures; True when the requirement holds."""
    backfills = round_backfills(rounds, recorded)
    frames = recorded.frame_ns, recorded.latency_ms
    print_rounds(rounds, backfills, frames)
    baseline_spans, backfill_spans = [one.baseline for one in rounds], [backfill.span for backfill in backfills]
    base, during = Window.of(*frames, baseline_spans), Window.of(*frames, backfill_spans)
    pages, trades = sum(b.pages for b in backfills), sum(b.trades for b in backfills)
    print(f"\nbackfilled {pages} pages, {trades:,} trades in {during.seconds:.2f} s of backfill windows "
          f"({pages / during.seconds:.0f} pages/s); write_loss records: {recorded.write_losses}")  # fmt: skip
    print("frame latency t - E (ms)             frames      s  frames/s     p50     p99     max")
    print(base.row("collector, no backfill"))
    print(during.row("collector, during backfill"))
    probe_frames = (
        np.array([received for received, _ in probe.samples], dtype=np.int64),
        np.array([latency for _, latency in probe.samples]),
    )
    print(Window.of(*probe_frames, baseline_spans).row("simulator probe, no backfill"))
    print(Window.of(*probe_frames, backfill_spans).row("simulator probe, during backfill"))
    ratio = during.p(99) / base.p(99)
    passed = ratio <= REQUIRED_RATIO
    print(f"ratio p99 during / without backfill = {ratio:.2f} (requirement <= {REQUIRED_RATIO:.1f}): "
          f"{'PASS' if passed else 'FAIL'}")  # fmt: skip
    return passed


def main() -> int:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="baseline + backfill rounds (default 6)")
    parser.add_argument("--window", type=float, default=5.0, help="seconds of each baseline window (default 5)")
    parser.add_argument("--stall", type=float, default=10.0, help="seconds the streams stall per hole (default 10)")
    parser.add_argument("--burst", type=float, default=20.0, help="market rate multiplier while stalled (default 20)")
    parser.add_argument("--rate", type=float, default=10.0, help="simulator activity, 1 = busy (default 10)")
    parser.add_argument(
        "--weight-per-minute",
        type=int,
        default=24_000,
        help="REST weight budget of the simulator and the collector, all of it the backfill's (default 24,000: "
        "20 pages/s, 10x the whole IP budget Binance allows; 1,000,000 sends pages back to back)",
    )
    parser.add_argument("--quick", action="store_true", help="3 rounds, 3 s windows, 6 s stalls (under a minute)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.window, args.stall = 3, 3.0, 6.0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        workdir = Path(tmp)
        sim = start_simulator(workdir, args.rate, args.weight_per_minute)
        probe = Probe(sim.info["ws_base"])
        collector = None
        try:
            collector = start_collector(workdir, sim, args.weight_per_minute)
            probe.start()
            wait_for(lambda: all_streams_live(collector), 20, "frames on every stream")
            watch(collector, 2 * SETTLE_S)
            rounds = [run_round(sim, collector, args, workdir) for _ in range(args.rounds)]
        finally:
            probe.stop()
            exit_code = collector.terminate(60) if collector is not None else None
            accounting = sim.stop()
        if exit_code != 0:
            raise RuntimeError(f"the collector exited {exit_code}; its log:\n{log_tail(workdir / 'collector.log')}")
        recorded = read_segments(workdir / "data" / "segments" / "sealed")
    rest = accounting["rest"]
    print(f"simulator rate {args.rate:g} on {', '.join(SYMBOLS)} (aggTrade, bookTicker, depth@100ms); holes made by "
          f"{args.stall:g} s stalls at x{args.burst:g} the rate; REST budget {args.weight_per_minute:,} weight/min "
          f"on both sides: {rest['requests']} requests, rejected {rest['rejected']}; "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip
    return 0 if report(rounds, recorded, probe) else 1


if __name__ == "__main__":
    sys.exit(main())

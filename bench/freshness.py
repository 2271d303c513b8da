"""Freshness: event -> queryable-Parquet latency at steady state, and catch-up time for a 1-hour backlog.

    python bench/freshness.py [--segment-seconds 10] [--minutes 4] [--backlog-minutes 60] [--part both]

1. Steady state: ``harvest up --simulate`` (the end-to-end harness: free loopback ports, short knobs) at simulator
   rate 1.0 on BTCUSDT and ETHUSDT for ``--minutes``. Per raw Parquet row (prices, bookticker, orderbook): the time its
   file became queryable (mtime; compaction renames a finished file into place) minus the row's exchange event time,
   p50/p95/max over rows whose event time falls after the first minute (warm-up). Same-run baseline: the latency that
   segmenting alone implies, the mean age of a line when its segment is sealed (~interval/2), from the sidecars.
   Then where seal -> file goes, per compaction run of the window (``bench/run_overhead.py`` phases).
2. Catch-up: 60 sealed 60-second segments of busy-market traffic (the compaction benchmark's generator) in a fresh data
   root, then only ``dagster-daemon`` on it, timed until every segment is materialized. Baseline: the hour of data.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402

from bench.collector_soak import BUSY_MARKET_FRAMES_PER_S  # noqa: E402
from bench.compaction import make_segment  # noqa: E402
from bench.run_overhead import (  # noqa: E402
    SYMBOLS,
    compaction_timelines,
    load_average,
    print_phases,
    start_daemon,
    stop_daemon,
)
from harvest_pipeline import segments  # noqa: E402
from harvest_pipeline.paths import DataPaths  # noqa: E402
from tests.compaction.frames import TrafficMix  # noqa: E402
from tests.e2e.harness import RunningPipeline, http_json, start_pipeline, wait_for  # noqa: E402

LATENCY_KINDS = ("prices", "bookticker", "orderbook")
WARM_UP_S = 60.0
BACKLOG_SEGMENT_S = 60
EVENTS = dg.AssetKey("events")
MS, S_NS = 1_000_000, 1_000_000_000


def materialized_segments(instance: dg.DagsterInstance) -> set[str]:
    """Segment partitions whose compaction has been recorded (``events`` is materialized for every compacted one)."""
    return set(instance.get_materialized_partitions(EVENTS))


def failed_runs(instance: dg.DagsterInstance) -> int:
    """How many runs failed: a failed compaction would otherwise look like a slow one until the timeout."""
    return instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))


def wait_until_compacted(pipeline: RunningPipeline, until_ns: int, timeout_s: float) -> None:
    """Wait until a sealed segment reaches past ``until_ns`` and every segment starting before it is compacted."""
    sealed_root = DataPaths.from_root(pipeline.data).sealed_segments
    with dg.DagsterInstance.from_config(str(pipeline.data / "dagster_home")) as instance:

        def covered() -> bool:
            metas = [s.load_meta() for s in segments.list_sealed_segments(sealed_root)]
            needed = {m.name for m in metas if m.first_recv_ns is not None and m.first_recv_ns <= until_ns}
            reached = any(m.last_recv_ns is not None and m.last_recv_ns >= until_ns for m in metas)
            return reached and needed <= materialized_segments(instance)

        wait_for("the measured window to be sealed and compacted", covered, timeout_s=timeout_s, interval_s=2)


def row_latencies(parquet_root: Path, sidecars: pa.Table, lo_ms: int, hi_ms: int) -> list[tuple]:
    """Per kind and overall: rows, p50/p95/max/mean latency (ms) and the mean of its three parts.

    Parts per row: receive delay (recv - event), waiting for the seal (sealed_at - recv) and seal -> queryable
    (file mtime - sealed_at): the last is what orchestration (sensor tick, run launch, compaction) adds.
    """
    files = [
        path for kind in LATENCY_KINDS for path in sorted(parquet_root.glob(f"date=*/symbol=*/kind={kind}/*.parquet"))
    ]
    if not files:
        raise RuntimeError(f"no raw Parquet files under {parquet_root}: nothing was compacted")
    mtimes = pa.table({"filename": [str(p) for p in files], "mtime_ms": [p.stat().st_mtime_ns / MS for p in files]})
    con = duckdb.connect()
    con.register("mtimes", mtimes)
    con.register("sidecars", sidecars)
    return con.execute(
        """
        WITH latencies AS (
            SELECT r.kind, m.mtime_ms - r.event_time_ms AS latency_ms,
                   r.recv_time_ns / 1e6 - r.event_time_ms AS recv_ms,
                   s.sealed_at_ms - r.recv_time_ns / 1e6 AS seal_wait_ms,
                   m.mtime_ms - s.sealed_at_ms AS orchestration_ms
            FROM read_parquet($files, filename = true, hive_partitioning = true, union_by_name = true) r
            JOIN mtimes m USING (filename) JOIN sidecars s USING (segment)
            WHERE r.event_time_ms BETWEEN $lo AND $hi
        )
        SELECT coalesce(kind, 'all'), count(*), quantile_cont(latency_ms, 0.5), quantile_cont(latency_ms, 0.95),
               max(latency_ms), avg(latency_ms), avg(recv_ms), avg(seal_wait_ms), avg(orchestration_ms)
        FROM latencies GROUP BY ROLLUP (kind) ORDER BY kind NULLS LAST
        """,
        {"files": [str(p) for p in files], "lo": lo_ms, "hi": hi_ms},
    ).fetchall()


def sidecar_table(metas: list[segments.SegmentMeta]) -> pa.Table:
    """Segment name -> sealed_at (ms), for joining rows to the moment their segment was sealed."""
    return pa.table({"segment": [m.name for m in metas], "sealed_at_ms": [m.sealed_at_ns / MS for m in metas]})


def mean_age_at_seal_ms(metas: list[segments.SegmentMeta], lo_ns: int, hi_ns: int) -> float:
    """Line-weighted mean of ``sealed_at - (first_recv + last_recv) / 2`` over segments centred in the window.

    Lines arrive evenly through a segment, so this is the mean age of a line when its segment is sealed: the part of
    the latency that segmenting itself implies (about half the interval), whatever runs afterwards.
    """
    weighted, total = 0.0, 0
    for meta in metas:
        if meta.first_recv_ns is None or meta.last_recv_ns is None:
            continue
        middle_ns = (meta.first_recv_ns + meta.last_recv_ns) / 2
        if lo_ns <= middle_ns <= hi_ns:
            weighted += (meta.sealed_at_ns - middle_ns) * meta.lines
            total += meta.lines
    if not total:
        raise RuntimeError("no sealed segment in the measured window")
    return weighted / total / MS


def steady_state(root: Path, segment_seconds: float, minutes: float) -> None:
    """Run ``harvest up --simulate``, then measure event -> queryable latency over the window after warm-up."""
    pipeline = start_pipeline(root / "data", segment_seconds=segment_seconds, symbols=SYMBOLS)
    try:
        wait_for("the Dagster UI", lambda: http_json(f"{pipeline.ui_url}/server_info"), timeout_s=300, interval_s=2)
        ready_ns = time.time_ns()
        lo_ns, hi_ns = ready_ns + int(WARM_UP_S * S_NS), ready_ns + int(minutes * 60 * S_NS)
        print(
            f"pipeline up; measuring rows with event times {WARM_UP_S:.0f} s to {minutes * 60:.0f} s after", flush=True
        )
        while time.time_ns() < hi_ns:
            if pipeline.process.poll() is not None:
                raise RuntimeError(f"harvest up exited {pipeline.process.returncode}\n{pipeline.logs()}")
            time.sleep(5)
        wait_until_compacted(pipeline, hi_ns, timeout_s=300)
    except BaseException:
        print(pipeline.logs()[-8000:])
        raise
    finally:
        code = pipeline.stop()
    if code != 0:
        raise RuntimeError(f"harvest up exited {code} on SIGTERM\n{pipeline.logs()[-8000:]}")
    paths = DataPaths.from_root(pipeline.data)
    metas = [s.load_meta() for s in segments.list_sealed_segments(paths.sealed_segments)]
    baseline_ms = mean_age_at_seal_ms(metas, lo_ns, hi_ns)
    results = row_latencies(paths.market_parquet(), sidecar_table(metas), lo_ns // MS, hi_ns // MS)
    print(f"\nsteady state: segment interval {segment_seconds:g} s, simulator rate 1.0, {SYMBOLS}, "
          f"{minutes:g} min ({WARM_UP_S:.0f} s warm-up skipped), {len(metas)} segments sealed")  # fmt: skip
    print("event -> queryable Parquet (ms)      rows      p50      p95      max     mean | recv  wait-seal  seal->file")
    for kind, rows, p50, p95, high, mean, recv, wait, orchestration in results:
        print(f"  {kind:<30} {rows:>9,} {p50:>8,.0f} {p95:>8,.0f} {high:>8,.0f} {mean:>8,.0f} | "
              f"{recv:>4,.0f} {wait:>10,.0f} {orchestration:>11,.0f}")  # fmt: skip
    overall = results[-1]
    print(f"baseline: mean age of a line when its segment is sealed (sidecars) = {baseline_ms:,.0f} ms "
          f"(interval/2 = {segment_seconds * 500:,.0f} ms)")  # fmt: skip
    print(f"ratio p50 / baseline = {overall[2] / baseline_ms:.2f}; mean / baseline = {overall[5] / baseline_ms:.2f} "
          f"(1.00 would mean orchestration adds nothing)")  # fmt: skip
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        timelines = [t for t in compaction_timelines(instance, paths) if lo_ns / S_NS <= t.sealed_s <= hi_ns / S_NS]
    segments_per_run = sum(len(t.segments) for t in timelines) / len(timelines)
    print(f"\nwhere seal -> file goes: {len(timelines)} compaction runs sealed in the window, "
          f"{segments_per_run:.1f} segments per run")  # fmt: skip
    print_phases(timelines)


def write_backlog(root: Path, minutes: int) -> tuple[list[str], int]:
    """``minutes`` sealed one-minute segments of busy-market traffic ending at the current minute; (names, frames)."""
    frames = BACKLOG_SEGMENT_S * BUSY_MARKET_FRAMES_PER_S
    start_ms = (time.time_ns() // MS // 60_000 - minutes) * 60_000
    mix = TrafficMix(start_ms=start_ms, step_ms=1000 // BUSY_MARKET_FRAMES_PER_S)
    names = [
        make_segment(root, frames, start_ms + i * BACKLOG_SEGMENT_S * 1000, i + 1, mix).name for i in range(minutes)
    ]
    return names, frames * minutes


def catch_up(root: Path, backlog_minutes: int, timeout_s: float) -> None:
    """Write the backlog, start only the daemon, and time until every segment's compaction is recorded."""
    paths = DataPaths.from_root(root / "data")
    generated = time.perf_counter()
    names, frames = write_backlog(paths.root, backlog_minutes)
    print(f"\nbacklog: {len(names)} segments x {frames // len(names):,} frames written in "
          f"{time.perf_counter() - generated:.0f} s; starting dagster-daemon", flush=True)  # fmt: skip
    log_path = root / "dagster-daemon.log"
    daemon = start_daemon(paths, log_path)
    started = time.monotonic()
    try:
        with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
            done = 0
            while done < len(names):
                if time.monotonic() - started > timeout_s or daemon.poll() is not None or failed_runs(instance):
                    raise RuntimeError(f"catch-up stopped at {done}/{len(names)} segments after "
                                       f"{time.monotonic() - started:.0f} s (daemon exit {daemon.poll()}, "
                                       f"failed runs {failed_runs(instance)})")  # fmt: skip
                time.sleep(1)
                now_done = len(materialized_segments(instance) & set(names))
                if now_done != done:
                    print(f"  {time.monotonic() - started:6.1f} s: {now_done}/{len(names)} segments", flush=True)
                done = now_done
        elapsed = time.monotonic() - started
    except BaseException:
        print(log_path.read_text(errors="replace")[-8000:])
        raise
    finally:
        stop_daemon(daemon)
    covered_s = backlog_minutes * BACKLOG_SEGMENT_S
    print(f"catch-up: {len(names)} segments, {frames:,} frames ({BUSY_MARKET_FRAMES_PER_S} frames/s, "
          f"busy market) in {elapsed:.1f} s from daemon start")  # fmt: skip
    print(f"  {len(names) / elapsed * 60:,.1f} segments/min, {frames / elapsed:,.0f} frames/s")
    print(f"  baseline: the {covered_s / 60:.0f} min of data it covers; ratio catch-up / data time = "
          f"{elapsed / covered_s:.3f} ({covered_s / elapsed:.0f}x real time)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segment-seconds", type=float, default=10.0, help="steady state: seal segments this often")
    parser.add_argument(
        "--minutes", type=float, default=4.0, help="steady state: how long to run (first minute skipped)"
    )
    parser.add_argument("--backlog-minutes", type=int, default=60, help="catch-up: one-minute segments in the backlog")
    parser.add_argument("--catch-up-timeout", type=float, default=1800.0, help="catch-up: give up after (s)")
    parser.add_argument("--part", choices=("both", "steady", "catch-up"), default="both")
    args = parser.parse_args()
    if args.minutes * 60 <= WARM_UP_S:
        parser.error(f"--minutes must leave something after the {WARM_UP_S:.0f} s warm-up")
    print(f"load average at start: {load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-freshness-") as tmp:
        if args.part in ("both", "steady"):
            (Path(tmp) / "steady").mkdir()
            steady_state(Path(tmp) / "steady", args.segment_seconds, args.minutes)
        if args.part in ("both", "catch-up"):
            (Path(tmp) / "catch-up").mkdir()
            catch_up(Path(tmp) / "catch-up", args.backlog_minutes, args.catch_up_timeout)
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()

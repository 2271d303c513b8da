"""Compaction throughput against same-run baselines, orchestration overhead and backlog catch-up.

    python bench/compaction.py [--frames 1000000] [--trade-frames 1000000] [--repeat 2] [--backlog 40]
                               [--backlog-frames 5000]

1. One segment of realistic mixed traffic (bookTicker, aggTrade, 5-30 level depth diffs): full compaction rows/s vs a
   one-statement DuckDB ``COPY (SELECT json paths FROM read_csv(lines)) TO parquet`` of the same lines (goals >= 0.8
   and >= 0.4), each baseline in a process of its own (``baseline_in_own_process``), written two ways:
   ``j->>'path'`` per field (one parse per field, the original baseline) and one ``json_extract_string(j, [paths])``
   parse per line (the stronger baseline). A third figure is that one-parse
   statement also writing the depth levels as ``DECIMAL(18, 8)`` lists (no exactness guard, no check, one file):
   the least any compaction storing the levels must do, which the two goal baselines leave out.
2. The same for one segment of aggTrade frames only: ``prices`` compaction rows/s (goal >= 600,000).
3. Extraction alone, orjson in Python vs harvest's (scanner and DuckDB), on the mixed lines.
4. Per-run orchestration overhead of a real Dagster run (the job's own executor on a temp DAGSTER_HOME) and backlog
   catch-up in segments/minute with one batched run vs the estimate for one run per segment.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402
import orjson  # noqa: E402

from harvest_pipeline import segments  # noqa: E402
from harvest_pipeline.compaction import compact_segment, extract  # noqa: E402
from harvest_pipeline.compaction.lines import read_segment_lines  # noqa: E402
from harvest_pipeline.paths import DATA_ROOT_ENV, DataPaths  # noqa: E402
from harvest_pipeline.status import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG  # noqa: E402
from harvest_pipeline.store import sql_literal  # noqa: E402
from tests.compaction.frames import MS, SegmentBuilder, TrafficMix  # noqa: E402

START_MS = 1_767_225_600_000


def make_segment(root: Path, frames: int, opened_ms: int, index: int, mix: TrafficMix) -> segments.SealedSegment:
    builder = SegmentBuilder(root, opened_at_ns=opened_ms * MS)
    for stream, raw, event_ms in mix.frames(frames):
        builder.frame(stream, raw, event_ms + 4)
    return builder.seal(segments.segment_name(opened_ms * MS, "bench", "b00t", index))


_D = "$.f.data"
_BASELINE_FIELDS = (
    ("$.t", "BIGINT", "recv_ns"),
    ("$.c", None, "conn"),
    ("$.s", None, "stream"),
    (f"{_D}.e", None, "event"),
    (f"{_D}.E", "BIGINT", "event_ms"),
    (f"{_D}.s", None, "symbol"),
    (f"{_D}.u", "BIGINT", "update_id"),
    (f"{_D}.a", "BIGINT", "agg_id"),
    (f"{_D}.p", "DECIMAL(18, 8)", "price"),
    (f"{_D}.q", "DECIMAL(18, 8)", "qty"),
)
"""The baseline's columns: JSON path, cast (None: text) and name."""
_LEVELS = "levels"
_BASELINE_LEVELS = ((f"{_D}.b", _LEVELS, "bids"), (f"{_D}.a", _LEVELS, "asks"))
"""A depth diff's levels as lists of decimal pairs (a bookTicker's ``b`` and ``a`` are not lists: null)."""


def duckdb_copy_baseline(path: Path, out: Path, one_parse: bool, levels: bool = False) -> float:
    """The one-statement baseline: every line's common fields by JSON path into one zstd Parquet file.

    ``one_parse=False`` writes each field as ``j->>'path'`` (DuckDB parses the line once per field);
    ``one_parse=True`` pulls all paths from one parse with ``json_extract_string(j, [paths])``, the stronger baseline;
    ``levels=True`` (with ``one_parse``) also writes a depth diff's ``b`` and ``a`` as lists of ``DECIMAL(18, 8)``
    pairs.
    """

    def cast(sql: str, to: str | None) -> str:
        if to == _LEVELS:
            return f"""TRY(from_json({sql}, '[["DECIMAL(18, 8)"]]'))"""
        return sql if to is None else f"TRY_CAST({sql} AS {to})"

    if one_parse:
        fields = _BASELINE_FIELDS + (_BASELINE_LEVELS if levels else ())
        paths = ", ".join(f"'{p}'" for p, _, _ in fields)
        columns = ", ".join(f"{cast(f'v[{i}]', to)} AS {name}" for i, (_, to, name) in enumerate(fields, 1))
        source = f"(SELECT json_extract_string(j, [{paths}]) AS v FROM lines)"
    else:
        columns = ", ".join(f"{cast(f'j->>{p!r}', to)} AS {name}" for p, to, name in _BASELINE_FIELDS)
        source = "lines"
    started = time.perf_counter()
    with duckdb.connect() as con:
        con.execute(
            f"""
        COPY (
            WITH lines AS (
                SELECT j FROM read_csv({sql_literal(path)}, columns = {{'j': 'VARCHAR'}}, header = false,
                                       delim = '\\x01', quote = '', escape = '', auto_detect = false)
            )
            SELECT {columns} FROM {source}
        ) TO {sql_literal(out)} (FORMAT parquet, COMPRESSION zstd)
        """
        )
    return time.perf_counter() - started


def orjson_extraction(path: Path) -> float:
    """Python alternative: decode each line with orjson and collect per-kind column values (no Parquet)."""
    started = time.perf_counter()
    columns: dict[str, list] = {"t": [], "E": [], "s": [], "id": [], "p": [], "q": [], "b": [], "a": []}
    with open(path, "rb") as handle:
        for line in handle:
            record = orjson.loads(line)
            data = record["f"]["data"]
            columns["t"].append(record["t"])
            columns["E"].append(data["E"])
            columns["s"].append(data["s"])
            columns["id"].append(data.get("u", data.get("a")))
            columns["p"].append(data.get("p"))
            columns["q"].append(data.get("q"))
            columns["b"].append(data.get("b"))
            columns["a"].append(data.get("a"))
    return time.perf_counter() - started


def harvest_extraction(path: Path) -> float:
    """The chosen path: read lines with Arrow, extract and validate every kind (the compiled scanner where built,
    DuckDB's JSON paths for the rest, the checks in DuckDB), no Parquet."""
    started = time.perf_counter()
    lines = read_segment_lines(path)
    con = extract.connect()
    extract.extract_kinds(con, lines.table, path.stem)
    con.close()
    return time.perf_counter() - started


def baseline_in_own_process(path: Path, out: Path, one_parse: bool, levels: bool = False) -> float:
    """``duckdb_copy_baseline`` in a process of its own (timed there, after a warm-up statement): the memory a
    baseline leaves behind in DuckDB's allocator slowed a compaction measured next in the same process by 20-40 %
    (measured with the `j->>` baseline, even with its connection closed), which is not the compaction's cost."""
    command = [sys.executable, __file__, "--baseline", str(path), str(out), str(one_parse), str(levels)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def compare_with_baselines(sealed: segments.SealedSegment, out: Path, repeat: int) -> tuple[float, float, float, float]:
    """Seconds of the three baselines and of ``compact_segment`` on ``sealed``: interleaved, best of ``repeat`` (the
    cores are shared, so one run can be unlucky)."""
    baseline_s = one_parse_s = levels_s = compaction_s = float("inf")
    target = out.with_suffix(".parquet")
    for _ in range(repeat):
        baseline_s = min(baseline_s, baseline_in_own_process(sealed.path, target, one_parse=False))
        one_parse_s = min(one_parse_s, baseline_in_own_process(sealed.path, target, one_parse=True))
        levels_s = min(levels_s, baseline_in_own_process(sealed.path, target, one_parse=True, levels=True))
        compaction_s = min(compaction_s, compact_segment(sealed, DataPaths.from_root(out)).duration_s)
    return baseline_s, one_parse_s, levels_s, compaction_s


def compaction_job() -> dg.JobDefinition:
    """The real job, reconstructable in a run's step subprocess."""
    from harvest_pipeline.definitions import defs

    return defs.resolve_job_def("compact_segments")


def timed_run(instance: dg.DagsterInstance, names: list[str]) -> float:
    tags = {PARTITION_RANGE_START_TAG: names[0], PARTITION_RANGE_END_TAG: names[-1]}
    started = time.perf_counter()
    with dg.execute_job(dg.reconstructable(compaction_job), instance=instance, tags=tags) as result:
        assert result.success, f"run over {names[0]}..{names[-1]} failed"
    return time.perf_counter() - started


def main() -> None:
    if sys.argv[1:2] == ["--baseline"]:  # one baseline, in the process baseline_in_own_process started
        path, out, one_parse, levels = sys.argv[2:6]
        duckdb.sql("SELECT json_extract_string('{}', '$.x')").fetchall()  # load the JSON extension first
        print(duckdb_copy_baseline(Path(path), Path(out), one_parse == "True", levels == "True"))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--trade-frames", type=int, default=1_000_000, help="frames of the aggTrade-only segment")
    parser.add_argument("--repeat", type=int, default=2, help="runs of baseline and compaction (best is kept)")
    parser.add_argument("--backlog", type=int, default=40)
    parser.add_argument("--backlog-frames", type=int, default=5_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-compaction-") as tmp:
        root = Path(tmp)
        segments_made = f"a {args.frames:,}-frame mixed segment and a {args.trade_frames:,}-frame aggTrade segment"
        print(f"writing {segments_made} ...", flush=True)
        big = make_segment(root / "big", args.frames, START_MS, 1, TrafficMix(start_ms=START_MS))
        only_trades = TrafficMix(start_ms=START_MS, cuts=(0.0, 1.0))
        trades = make_segment(root / "trades", args.trade_frames, START_MS, 2, only_trades)
        for title, segment, frames, goal in (
            ("mixed segment", big, args.frames, "goals >= 0.80 vs j->>, >= 0.40 vs one parse"),
            ("aggTrade segment (prices only)", trades, args.trade_frames, "goal >= 600,000 rows/s"),
        ):
            out = root / f"out-{segment.name}"
            baseline_s, one_parse_s, levels_s, compaction_s = compare_with_baselines(segment, out, args.repeat)
            print(f"{title}: {frames:,} lines, {segment.path.stat().st_size / 1e6:.0f} MB ({goal})")
            for label, seconds in (
                ("baseline COPY, j->>'path' per field", baseline_s),
                ("baseline COPY, one path-list parse", one_parse_s),
                ("one parse + levels as decimal lists", levels_s),
                ("harvest compact_segment", compaction_s),
            ):
                print(f"  {label:36s}: {seconds:6.2f} s  {frames / seconds:10,.0f} rows/s")
            print(f"  {'ratio vs j->> baseline':36s}: {baseline_s / compaction_s:.2f}")
            print(f"  {'ratio vs one-parse baseline':36s}: {one_parse_s / compaction_s:.2f}")
            print(f"  {'ratio vs one parse + levels':36s}: {levels_s / compaction_s:.2f}", flush=True)
        trades.path.unlink()
        orjson_s, duck_s = orjson_extraction(big.path), harvest_extraction(big.path)
        print(f"extraction only, orjson in Python   : {orjson_s:6.2f} s  {args.frames / orjson_s:10,.0f} rows/s")
        print(f"extraction only, harvest (scan+SQL) : {duck_s:6.2f} s  {args.frames / duck_s:10,.0f} rows/s")
        print(f"ratio harvest / orjson speed        : {orjson_s / duck_s:.2f}")
        big.path.unlink()

        backlog_root = root / "backlog"
        os.environ[DATA_ROOT_ENV] = str(backlog_root)
        mix = TrafficMix(start_ms=START_MS)
        names = [
            make_segment(backlog_root, args.backlog_frames, START_MS + i * 60_000, i + 1, mix).name
            for i in range(args.backlog)
        ]
        (root / "dagster_home").mkdir()
        quiet = {"python_logs": {"python_log_level": "WARNING"}}  # Dagster's per-event lines would bury the figures
        with dg.instance_for_test(temp_dir=str(root / "dagster_home"), overrides=quiet) as instance:
            instance.add_dynamic_partitions("segments", names)
            one_s = timed_run(instance, names[:1])
            segment_s = compact_segment(
                segments.find_sealed_segment(backlog_root / "segments" / "sealed", names[0]),
                DataPaths.from_root(backlog_root),
            ).duration_s
            batch_s = timed_run(instance, names)
        overhead_s = one_s - segment_s
        per_segment_runs_s = args.backlog * one_s
        print(f"one run, one {args.backlog_frames:,}-frame segment   : {one_s:6.2f} s (compaction {segment_s:.2f} s)")
        print(f"per-run orchestration overhead      : {overhead_s:6.2f} s")
        rate = args.backlog / batch_s * 60
        print(f"backlog {args.backlog} segments, one batched run : {batch_s:6.2f} s = {rate:8.0f} segments/min")
        print(
            f"same backlog, one run per segment   : {per_segment_runs_s:6.2f} s = "
            f"{args.backlog / per_segment_runs_s * 60:8.0f} segments/min (estimated: runs x single-run time)"
        )
        print(f"ratio batched / per-segment speed   : {per_segment_runs_s / batch_s:.1f}")


if __name__ == "__main__":
    main()

"""Compact one sealed segment: read, extract, deduplicate, quarantine, write, and account for every line."""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq

from harvest_pipeline import schema, segments
from harvest_pipeline.compaction import extract
from harvest_pipeline.compaction.continuity import Gap, find_gaps
from harvest_pipeline.compaction.ledger import Ledger, build_ledger, events_table, quarantine_file_bytes
from harvest_pipeline.compaction.lines import read_segment_lines
from harvest_pipeline.compaction.writer import WrittenFile, write_partitioned
from harvest_pipeline.paths import DataPaths

DATA_KINDS = tuple(spec.kind for spec in extract.KINDS)


class SegmentUnreadable(Exception):
    """A permanent failure: the segment or its sidecar is missing or unusable; retrying cannot help."""


@dataclass
class CompactionReport:
    """What compacting one segment read, wrote and set aside."""

    segment: str
    lines_read: int
    sidecar_lines: int
    files: list[WrittenFile]
    duplicates: dict[str, int]
    control_records: int
    quarantined: int
    quarantine_file: Path | None
    gaps: list[Gap]
    duration_s: float
    kinds_in_sidecar: dict[str, int] = field(default_factory=dict)

    def rows_written(self, kind: str) -> int:
        """Rows this run wrote for ``kind``, over all dates and symbols."""
        return sum(f.rows for f in self.files if f.kind == kind)

    def unexplained_gaps(self) -> list[Gap]:
        """Id breaks no collector record explains."""
        return [gap for gap in self.gaps if gap.explained_by_line is None]


def quarantine_path(quarantine_root: Path, segment: str) -> Path:
    """Where a segment's quarantined lines are kept."""
    return quarantine_root / f"date={segments.segment_date(segment)}" / f"{segment}.jsonl"


def compact_segment(
    sealed: segments.SealedSegment, paths: DataPaths, fs: segments.FileSystem = segments.LOCAL_FS
) -> CompactionReport:
    """Compact ``sealed`` into Parquet under ``paths.parquet``; quarantined lines go under ``paths.quarantine``.

    Raises ``SegmentUnreadable`` for permanent problems (missing files, corrupt sidecar); other ``OSError`` s are
    transient and safe to retry: every output is replaced atomically and named after the segment.
    """
    started = time.perf_counter()
    meta = _load_meta(sealed)
    try:
        lines = read_segment_lines(sealed.path)
    except FileNotFoundError as exc:
        raise SegmentUnreadable(f"segment {sealed.name}: data file vanished ({exc})") from exc
    con = extract.connect()
    try:
        extraction = extract.extract_kinds(con, lines.table, sealed.name)
        raw = lines.table.column("raw")
        invalid = lines.invalid_utf8
        leftover = [
            row
            for row in zip(
                *(extraction.leftover.column(c).to_pylist() for c in ("line", "record_kind", "event")), strict=True
            )
            if row[0] not in invalid
        ]
        set_aside = [(line, reason) for line, (reason, _) in invalid.items()]
        set_aside += [entry for rows in extraction.kinds.values() for entry in rows.quarantined]

        def raw_of(line: int) -> str:
            return invalid[line][1] if line in invalid else raw[line - 1].as_py()

        ledger = build_ledger(sealed.name, meta.opened_at_ns, leftover, set_aside, raw_of)
        gaps = find_gaps(con, ledger.events)
    finally:
        con.close()
    files = _write_all(extraction, ledger, sealed.name, paths.parquet, fs)
    quarantine_file = _write_quarantine(ledger, sealed.name, paths.quarantine, fs)
    return CompactionReport(
        segment=sealed.name,
        lines_read=lines.table.num_rows,
        sidecar_lines=meta.lines,
        files=files,
        duplicates={kind: rows.duplicates for kind, rows in extraction.kinds.items()},
        control_records=ledger.control_records,
        quarantined=len(ledger.quarantine),
        quarantine_file=quarantine_file,
        gaps=gaps,
        duration_s=time.perf_counter() - started,
        kinds_in_sidecar=dict(meta.kinds),
    )


def _load_meta(sealed: segments.SealedSegment) -> segments.SegmentMeta:
    try:
        return sealed.load_meta()
    except FileNotFoundError as exc:
        raise SegmentUnreadable(f"segment {sealed.name}: sidecar {sealed.meta_path} is missing") from exc
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise SegmentUnreadable(f"segment {sealed.name}: sidecar {sealed.meta_path} is corrupt ({exc})") from exc


def _write_all(
    extraction: extract.Extraction, ledger: Ledger, segment: str, parquet_root: Path, fs: segments.FileSystem
) -> list[WrittenFile]:
    """Write every kind; kinds are encoded in parallel threads (Parquet encoding releases the GIL)."""
    jobs = [
        (rows.table, kind, schema.RAW_KINDS[kind], extract.KIND_BY_NAME[kind].time_column)
        for kind, rows in extraction.kinds.items()
    ]
    jobs.append((events_table(ledger), "events", schema.EVENTS, "event_time_ms"))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        batches = pool.map(lambda job: write_partitioned(*job, segment, parquet_root, fs), jobs)
        return [written for batch in batches for written in batch]


def _write_quarantine(ledger: Ledger, segment: str, quarantine_root: Path, fs: segments.FileSystem) -> Path | None:
    target = quarantine_path(quarantine_root, segment)
    if not ledger.quarantine:
        fs.unlink(target)
        return None
    fs.makedirs(target.parent)
    fs.write_file(target, quarantine_file_bytes(segment, ledger.quarantine))
    return target


@dataclass(frozen=True)
class Reconciliation:
    """Whether every line of a segment is accounted for, counted from the files on disk."""

    passed: bool
    detail: dict[str, Any]


def reconcile(report: CompactionReport) -> Reconciliation:
    """lines read = data rows on disk + duplicates removed + control records + quarantined, exactly; the events files
    hold exactly the control and quarantine rows; and the collector's sidecar counted the same number of lines."""
    on_disk: Counter[str] = Counter()
    for written in report.files:
        on_disk[written.kind] += pq.ParquetFile(written.path).metadata.num_rows
    data_rows = sum(on_disk[kind] for kind in DATA_KINDS)
    duplicates = sum(report.duplicates.values())
    accounted = data_rows + duplicates + report.control_records + report.quarantined
    events_expected = report.control_records + report.quarantined
    passed = accounted == report.lines_read == report.sidecar_lines and on_disk["events"] == events_expected
    detail = {
        "segment": report.segment,
        "lines_read": report.lines_read,
        "sidecar_lines": report.sidecar_lines,
        "data_rows_on_disk": {kind: on_disk[kind] for kind in DATA_KINDS},
        "duplicates_removed": report.duplicates,
        "control_records": report.control_records,
        "quarantined": report.quarantined,
        "accounted": accounted,
        "events_rows_on_disk": on_disk["events"],
        "events_rows_expected": events_expected,
    }
    return Reconciliation(passed, detail)

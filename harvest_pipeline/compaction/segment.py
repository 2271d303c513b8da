"""Compact one sealed segment: read, extract, deduplicate, quarantine, write, and account for every line."""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harvest_pipeline import schema, segments
from harvest_pipeline.compaction import extract, sidecar
from harvest_pipeline.compaction.continuity import Gap, find_gaps
from harvest_pipeline.compaction.ledger import Ledger, build_ledger, events_table, quarantine_file_bytes
from harvest_pipeline.compaction.lines import SegmentLines, split_segment_lines
from harvest_pipeline.compaction.writer import WrittenFile, stage_partitioned
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.store import Publication

DATA_KINDS = tuple(spec.kind for spec in extract.KINDS)


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

    A problem of one line never fails the segment: the line is quarantined with its reason. Raises
    ``SegmentUnreadable`` for permanent whole-segment problems (a missing or unreadable file, a corrupt sidecar, bytes
    that disagree with the sidecar's size, line count or sha256), before anything is written. Other ``OSError`` s are
    transient and safe to retry: every output is replaced atomically and named after the segment.
    """
    started = time.perf_counter()
    meta = sidecar.load_meta(sealed)
    data = sidecar.read_data(sealed)
    with ThreadPoolExecutor(max_workers=1) as hasher:  # hashlib releases the GIL: the digest overlaps extraction
        digest = hasher.submit(lambda: hashlib.sha256(data).hexdigest())
        lines = split_segment_lines(data)
        try:
            extraction, ledger, gaps = _extract(lines, sealed.name, meta.opened_at_ns)
        finally:  # checked even when extraction raised: corrupt bytes are the better explanation
            sidecar.verify(sealed, meta, len(data), lines.table.num_rows, digest.result())
    files, quarantine_file = _write_all(extraction, ledger, sealed.name, paths, fs)
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


def _extract(lines: SegmentLines, segment: str, opened_at_ns: int) -> tuple[extract.Extraction, Ledger, list[Gap]]:
    """Rows of every kind, the ledger of control and quarantined lines, and the id breaks of one segment."""
    con = extract.connect()
    try:
        extraction = extract.extract_kinds(con, lines.table, segment)
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

        ledger = build_ledger(segment, opened_at_ns, leftover, set_aside, raw_of)
        return extraction, ledger, find_gaps(con, ledger.events)
    finally:
        con.close()


def _write_all(
    extraction: extract.Extraction,
    ledger: Ledger,
    segment: str,
    paths: DataPaths,
    fs: segments.FileSystem,
) -> tuple[list[WrittenFile], Path | None]:
    """Stage every kind (encoded in parallel threads: Parquet encoding releases the GIL), write the quarantine file,
    then publish the kinds together: a failure before that point leaves none of this segment's new files visible."""
    jobs: list[tuple[pa.Table, str, pa.Schema, str]] = [
        (rows.table, kind, schema.RAW_KINDS[kind], extract.KIND_BY_NAME[kind].time_column)
        for kind, rows in extraction.kinds.items()
    ]
    jobs.append((events_table(ledger), "events", schema.EVENTS, "event_time_ms"))
    publication = Publication(fs)

    def stage(job: tuple[pa.Table, str, pa.Schema, str]) -> list[WrittenFile]:
        table, kind, kind_schema, time_column = job
        return stage_partitioned(table, kind, kind_schema, time_column, segment, paths.parquet, publication)

    try:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            batches = pool.map(stage, jobs)
            files = [written for batch in batches for written in batch]
        quarantine_file = _write_quarantine(ledger, segment, paths.quarantine, fs)
        publication.publish()
    finally:
        publication.discard()
    return files, quarantine_file


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

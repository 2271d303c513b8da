"""Compact one sealed segment: read, extract, deduplicate, quarantine, write, and account for every line."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from harvest_pipeline import schema, segments
from harvest_pipeline.compaction import extract, sidecar
from harvest_pipeline.compaction.continuity import Gap, find_gaps
from harvest_pipeline.compaction.kinds import KIND_BY_NAME, KINDS
from harvest_pipeline.compaction.ledger import Ledger, build_ledger, events_table, quarantine_file_bytes
from harvest_pipeline.compaction.lines import SegmentLines, split_segment_lines
from harvest_pipeline.compaction.memory import keep_freed_memory
from harvest_pipeline.compaction.writer import PartStager, WrittenFile
from harvest_pipeline.markets import USDM, Market
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.store import Publication
from harvest_pipeline.symbol_partitions import LEDGER_KIND

DATA_KINDS = tuple(spec.kind for spec in KINDS)


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
    market: Market = USDM
    """The market the segment was recorded from: its rows went to that market's Parquet root."""

    def partition_keys(self) -> set[str]:
        """The Dagster symbol partitions of the symbols this run wrote market data for (not ``ALL``, not the
        ledger alone)."""
        return {self.market.partition_key(f.symbol) for f in self.files if f.kind != LEDGER_KIND and f.rows}

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
    """Compact ``sealed`` into Parquet under its market's root in ``paths.parquet`` (the sidecar names the market);
    quarantined lines go under ``paths.quarantine``.

    A problem of one line never fails the segment: the line is quarantined with its reason. Raises
    ``SegmentUnreadable`` for permanent whole-segment problems (a missing or unreadable file, a corrupt sidecar, bytes
    that disagree with the sidecar's size, line count or sha256), before anything is written. Other ``OSError`` s are
    transient and safe to retry: every output is replaced atomically and named after the segment.

    Each kind's files are staged (hidden) as soon as its rows are ready, while the next kinds are extracted; the
    quarantine file is written and all of them are published together at the end: a failure before that point
    leaves none of this segment's new files visible. The process keeps freed memory for its next segment from
    then on (``memory.py``).
    """
    keep_freed_memory()
    started = time.perf_counter()
    meta = sidecar.load_meta(sealed)
    market = sidecar.market_of(sealed, meta)
    data = sidecar.read_data(sealed)
    publication = Publication(fs)
    try:
        with ThreadPoolExecutor(max_workers=1) as hasher:  # hashlib releases the GIL: the digest overlaps extraction
            digest = hasher.submit(lambda: hashlib.sha256(data).hexdigest())
            lines = split_segment_lines(data)

            def verify() -> None:
                sidecar.verify(sealed, meta, len(data), lines.table.num_rows, digest.result())

            parquet_root = market.parquet_root(paths.parquet)
            with PartStager(sealed.name, parquet_root, publication, before_first_write=verify) as stager:

                def stage(kind: str, rows: extract.KindRows) -> None:
                    stager.stage(kind, rows.table, rows.order, schema.RAW_KINDS[kind], KIND_BY_NAME[kind].time_column)

                try:
                    extraction, ledger, gaps = _extract(lines, sealed.name, meta.opened_at_ns, stage, market)
                finally:  # checked even when extraction raised: corrupt bytes are the better explanation
                    stager.ensure_checked()
                events = events_table(ledger)  # sorted by date, symbol, time and line
                stager.stage("events", events, np.arange(events.num_rows), schema.EVENTS, "event_time_ms")
        files = stager.files()
        quarantine_file = _write_quarantine(ledger, sealed.name, paths.quarantine, fs)
        publication.publish()
    finally:
        publication.discard()
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
        market=market,
    )


def _extract(
    lines: SegmentLines,
    segment: str,
    opened_at_ns: int,
    on_rows: Callable[[str, extract.KindRows], None],
    market: Market,
) -> tuple[extract.Extraction, Ledger, list[Gap]]:
    """Rows of every kind (each handed to ``on_rows`` when ready), the ledger of control and quarantined lines, and
    the id breaks of one segment."""
    con = extract.connect()
    try:
        extraction = extract.extract_kinds(con, lines.table, segment, on_rows, market)
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
        ledger = build_ledger(segment, opened_at_ns, leftover, set_aside, lines.text)
        gaps = find_gaps({kind: rows.table for kind, rows in extraction.kinds.items()}, ledger.events)
        return extraction, ledger, gaps
    finally:
        con.close()


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

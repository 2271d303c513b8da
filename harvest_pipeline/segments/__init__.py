"""The raw segment format: this package alone owns how records are encoded, written, sealed, recovered and read.

A *segment* is an append-only JSONL file. Every line is one record whose first four keys are always, in order::

    {"t": <receive time, ns since epoch, wall clock>, "c": "<connection id>", "n": <per-connection sequence>,
     "k": "<record kind>", ...}

Data records (``k == "frame"``) end with ``"s":"<stream>","f":<the exchange frame, byte for byte as received>``; the
frame is embedded without parsing or re-serialising it. A frame that cannot be embedded safely (not UTF-8, contains a
line break, not shaped like a JSON object) becomes a ``bad_frame`` record carrying the bytes in base64 and the reason.
REST depth snapshots are ``snapshot`` records with the response body embedded the same way (``"f"``); trades fetched
from REST to fill a hole are ``rest_trade`` records, one per trade object of the answer (``"f"``), each pointing at
the ``backfill`` control record of its request (``"r"``), which holds the request's provenance. Everything else
(connect, disconnect, subscribed, watchdog, gap, write_loss, recovered) is a control record: later stages turn those
into the ``events`` kind.

Life of a segment: lines are written with ``pwrite`` at a tracked offset into ``open/<collector>/<name>.jsonl.part``
(a failed or torn write is simply overwritten by the retry). Sealing fsyncs and truncates the file to its last good
byte, writes the ``<name>.jsonl.meta.json`` sidecar, atomically renames the data file to
``sealed/date=YYYY-MM-DD/<name>.jsonl`` and fsyncs both directories. A sealed segment never changes again. Names start
with the UTC open time, so they sort in time order, and carry the collector id, a per-process boot id and a counter,
so they never collide across restarts or hosts.

Modules: ``records`` (encode on the hot path, decode downstream), ``filesystem`` (the injectable file operations),
``layout`` (names, paths, statistics, sidecar), ``writer`` (append, seal, crash recovery), ``discovery`` (sealed
segments on disk). Import from the package: ``from harvest_pipeline import segments``.
"""

from harvest_pipeline.segments.discovery import (
    SealedSegment,
    find_sealed_segment,
    list_sealed_segments,
)
from harvest_pipeline.segments.filesystem import (
    LOCAL_FS,
    FileSystem,
)
from harvest_pipeline.segments.layout import (
    FORMAT_VERSION,
    META_SUFFIX,
    OPEN_SUFFIX,
    SEALED_OBJECT_FOLDER,
    SEALED_SUFFIX,
    SegmentMeta,
    SegmentStats,
    meta_path,
    sealed_object_name,
    sealed_path,
    segment_collector_id,
    segment_date,
    segment_name,
    validate_collector_id,
)
from harvest_pipeline.segments.records import (
    CONTROL_KINDS,
    KIND_BACKFILL,
    KIND_BAD_FRAME,
    KIND_FRAME,
    KIND_REST_TRADE,
    KIND_SNAPSHOT,
    MAX_BAD_FRAME_BYTES,
    RECORD_KINDS,
    RECORD_PREFIX,
    BadLine,
    Line,
    bad_line,
    encode_bad_frame,
    encode_control,
    encode_frame,
    encode_open_interest,
    encode_rest_trade,
    encode_snapshot,
    iter_lines,
    iter_records,
    parse_record,
    unembeddable_reason,
)
from harvest_pipeline.segments.writer import (
    OpenSegment,
    PartialAppend,
    Recovered,
    SegmentNamer,
    finish_seal,
    recover_open_segment,
    recover_open_segments,
    scan_stats,
)

__all__ = [
    "BadLine",
    "CONTROL_KINDS",
    "FORMAT_VERSION",
    "FileSystem",
    "KIND_BACKFILL",
    "KIND_BAD_FRAME",
    "KIND_FRAME",
    "KIND_REST_TRADE",
    "KIND_SNAPSHOT",
    "LOCAL_FS",
    "Line",
    "MAX_BAD_FRAME_BYTES",
    "META_SUFFIX",
    "OPEN_SUFFIX",
    "OpenSegment",
    "PartialAppend",
    "Recovered",
    "RECORD_KINDS",
    "RECORD_PREFIX",
    "SEALED_OBJECT_FOLDER",
    "SEALED_SUFFIX",
    "SealedSegment",
    "SegmentMeta",
    "SegmentNamer",
    "SegmentStats",
    "bad_line",
    "encode_bad_frame",
    "encode_control",
    "encode_frame",
    "encode_rest_trade",
    "encode_open_interest",
    "encode_snapshot",
    "find_sealed_segment",
    "finish_seal",
    "iter_lines",
    "iter_records",
    "list_sealed_segments",
    "meta_path",
    "sealed_object_name",
    "segment_collector_id",
    "parse_record",
    "recover_open_segment",
    "recover_open_segments",
    "scan_stats",
    "sealed_path",
    "segment_date",
    "segment_name",
    "unembeddable_reason",
    "validate_collector_id",
]

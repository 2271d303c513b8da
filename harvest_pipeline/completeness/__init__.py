"""Completeness certificates: per UTC day x symbol, is every exchange id of each sequenced stream accounted for?

For the aggTrade stream every id from the day before's last id + 1 to the day's last id arrived by websocket, was
filled by REST (``healed``), or is missing; for the diff-depth stream every ``pu`` break is a hole. A hole is
``declared`` when a ledger record explains it (a collector ``gap``, a ``write_loss``, a ``backfill`` that could not
fetch) and ``unexplained`` otherwise; a stream is ``certified`` when it has no unexplained hole. Pure functions over
paths, DuckDB for the set-based work; defined in docs/completeness.md.

Modules: ``sources`` (which files, as DuckDB views), ``trades`` and ``depth`` (the two sequences), ``holes`` (what
explains a hole), ``certificate`` (the table and its atomic write).
"""

from harvest_pipeline.completeness.certificate import build_certificate, write_certificate
from harvest_pipeline.completeness.holes import MAX_LISTED_HOLES
from harvest_pipeline.completeness.sources import COMPLETENESS_KIND, certificate_path

__all__ = ["COMPLETENESS_KIND", "MAX_LISTED_HOLES", "build_certificate", "certificate_path", "write_certificate"]

"""The Parquet store: this package alone owns where rows live, what identifies them, and how files appear.

Layout: ``<parquet root>/date=YYYY-MM-DD/symbol=SYM/kind=KIND/`` holds per-segment ``part-<segment>.parquet`` files
(compaction) and at most one ``day-<version>.parquet`` with its ``day-<version>.json`` manifest (consolidation).
Readers glob ``kind=KIND/*.parquet``. Files appear only by atomic rename (or directory exchange), and the rule that
makes every row visible exactly once, whatever order compaction and consolidation run in, is:

- a part whose segment is not in the visible day file's manifest is placed next to it;
- a part whose segment the day file already merged is merged into a new day file instead (its old rows replaced);
- consolidation merges everything visible into one day file and removes the parts in the same atomic exchange;
- compaction stages all its files first and publishes them only once every kind was written, so a failed run leaves
  nothing visible, and both hold the partition's lock while they change it.

Modules: ``layout`` (paths, names, validation, SQL literals), ``identity`` (each kind's dedup key), ``writer`` (the
one atomic Parquet writer and the staged publication), ``consolidation`` (day files).
"""

from harvest_pipeline.store.identity import DEDUP_KEYS
from harvest_pipeline.store.layout import (
    DAY_FILE_PREFIX,
    kind_dir,
    kind_select_sql,
    part_name,
    read_parquet_sql,
    sql_literal,
    symbol_folder,
    validate_date,
    visible_files,
)
from harvest_pipeline.store.writer import COMPRESSION, ROW_GROUP_ROWS, Publication, write_parquet_atomically

__all__ = [
    "COMPRESSION",
    "DAY_FILE_PREFIX",
    "DEDUP_KEYS",
    "Publication",
    "ROW_GROUP_ROWS",
    "kind_dir",
    "part_name",
    "kind_select_sql",
    "read_parquet_sql",
    "sql_literal",
    "validate_date",
    "symbol_folder",
    "visible_files",
    "write_parquet_atomically",
]

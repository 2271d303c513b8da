"""The validated L2 order book: replay of depth diffs from REST snapshots under Binance's rules (docs/book.md).

Modules: ``decimals`` (exact scaled integers), ``state`` (the book), ``inputs`` (what a day reads), ``sources``
(reading it from Parquet, where the kinds live), ``replay`` (the rules), ``record`` (second and minute ends),
``tables`` (the Arrow tables), ``build`` (one day end to end).
"""

from harvest_pipeline.book.build import BookDay, build_book, write_book
from harvest_pipeline.book.sources import BOOK_KINDS, book_file

__all__ = ["BOOK_KINDS", "BookDay", "book_file", "build_book", "write_book"]

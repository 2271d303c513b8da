"""Filling aggregate-trade holes from REST: the hole bookkeeping and page arithmetic (``holes``), one REST page
(``rest``), the records an answer becomes (``settle``, shared by both users), the collector's live backfill task
(``harvest_pipeline.collector.backfill``), and the healing of past days (``days``) into a sealed segment of its own
(``segment``) from ``harvest backfill`` (``command``) or the ``trade_backfill`` asset.
"""

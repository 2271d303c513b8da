"""Filling aggregate-trade holes from REST: the hole bookkeeping and page arithmetic (``holes``), one REST page
(``rest``), the collector's live backfill task (``harvest_pipeline.collector.backfill``) and the healing of past days
(``days``)."""

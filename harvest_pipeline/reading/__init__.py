"""Reading the store: ``hp.open(root)`` and its ``Store`` (tables, gaps, bars); ``docs/reading.md``."""

from harvest_pipeline.reading.store import Store, open

__all__ = ["Store", "open"]

"""Small files that other processes read while we write them (ready files, accounting, state, config templates).

A reader sees the old content or the new one, never half a file: write a temporary sibling, then rename over.
Segments do not use this: they have their own durable, fault-injectable path in ``harvest_pipeline.segments``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json_atomically(path: Path, value: Any) -> None:
    """Replace ``path`` with ``value`` as indented JSON in one rename."""
    write_bytes_atomically(path, orjson.dumps(value, option=orjson.OPT_INDENT_2))

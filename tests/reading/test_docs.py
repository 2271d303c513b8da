"""The Python of docs/reading.md runs as written on a store the real pipeline wrote (its dates moved to the store's)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from tests.e2e.readme import fenced_blocks

READING = Path(__file__).resolve().parents[2] / "docs" / "reading.md"
DOC_DAYS = ("2026-11-30", "2026-12-01")
"""The dates of the recording the document shows."""


def test_the_walkthrough_runs_on_a_recorded_store(recorded, monkeypatch):
    root, _, _ = recorded
    first, second = sorted(p.name.removeprefix("date=") for p in (root / "parquet" / "market=usdm").glob("date=*"))
    code = "\n".join(fenced_blocks("python", READING.read_text()))
    code = code.replace(DOC_DAYS[1], second).replace(DOC_DAYS[0], first)
    assert re.search(r"hp\.open\(\"data\"\)", code)
    monkeypatch.chdir(root.parent)
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(READING), "exec"), namespace)  # noqa: S102 - the document's own code
    assert len(namespace["daily"].fetchall()) == 2, "a row per recorded day"
    assert len(namespace["bars"]) == 4 and len(namespace["df"]) > 0
    assert {"feed", "certificate"} <= set(namespace["gaps"]["source"])
    assert len(namespace["certificates"]) == 4 and namespace["seconds"].count("*").fetchall()[0][0] == 10
    assert "Store(" in printed.getvalue()

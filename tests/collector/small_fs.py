"""Real small file systems for fault tests: a tmpfs that fills up, ballast to fill it, a read-only bind mount.

Tests run as root (CI too), so they mount for real; where mounting is impossible (no CAP_SYS_ADMIN) they are skipped
with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"mount {' '.join(args)} failed: {result.stderr.strip()}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def tmpfs(path: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` mounted at ``path`` for the duration (skips the test if mounting is impossible)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path))
    except (OSError, FileNotFoundError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {exc}")
    try:
        yield path
    finally:
        _umount(path)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` bind-mounted read-only over itself: writes and renames into it fail, as with lost permissions."""
    path.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(path), str(path))
    try:
        _mount("-o", "remount,ro,bind", str(path))
        yield path
    finally:
        _umount(path)


class Ballast:
    """A file that takes a file system's free space, and gives back exactly as much as asked."""

    def __init__(self, root: Path):
        self.path = root / "ballast"

    def fill(self, leave_bytes: int = 0) -> None:
        """Grow the ballast until at most ``leave_bytes`` are free (while others keep writing, so in steps)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            for step in (1 << 20, 1 << 12):
                while shutil.disk_usage(self.path.parent).free - step >= leave_bytes:
                    try:
                        os.posix_fallocate(fd, os.fstat(fd).st_size, step)
                    except OSError:
                        break
        finally:
            os.close(fd)

    def release(self, nbytes: int) -> None:
        """Free ``nbytes`` of the ballast."""
        size = self.path.stat().st_size
        os.truncate(self.path, max(0, size - nbytes))

    def remove(self) -> None:
        """Give all the space back."""
        self.path.unlink(missing_ok=True)

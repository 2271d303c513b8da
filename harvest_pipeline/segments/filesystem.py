"""The file operations a segment needs, injectable so tests can make the disk fail even as root."""

from __future__ import annotations

import os
from pathlib import Path


class FileSystem:
    """The handful of file operations a segment needs. Subclass it to inject faults."""

    def open_for_write(self, path: Path) -> int:
        """Open (creating) ``path`` for positional writes and return the descriptor."""
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        """Write ``data`` at ``offset``; returns the number of bytes written."""
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        """Flush a file's data and metadata to stable storage."""
        os.fsync(fd)

    def truncate(self, fd: int, size: int) -> None:
        """Cut a file to ``size`` bytes (drops a torn tail)."""
        os.ftruncate(fd, size)

    def close(self, fd: int) -> None:
        """Close a descriptor."""
        os.close(fd)

    def makedirs(self, path: Path) -> None:
        """Create a directory and its parents if missing."""
        path.mkdir(parents=True, exist_ok=True)

    def replace(self, src: Path, dst: Path) -> None:
        """Atomically rename ``src`` to ``dst`` (same file system)."""
        os.replace(src, dst)

    def allocate(self, fd: int, size: int) -> None:
        """Reserve ``size`` bytes of disk for a file, so later writes inside them cannot fail for lack of space."""
        os.posix_fallocate(fd, 0, size)

    def write_file(self, path: Path, data: bytes) -> None:
        """Write a small file durably: temp file, fsync, atomic rename. A failure leaves no temp file behind."""
        tmp = path.with_name(path.name + ".tmp")
        try:
            fd = self.open_for_write(tmp)
            try:
                self.truncate(fd, 0)
                written = 0
                while written < len(data):
                    written += self.pwrite(fd, data[written:], written)
                self.fsync(fd)
            finally:
                self.close(fd)
            self.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def fsync_dir(self, path: Path) -> None:
        """Persist a directory's entries (after a create or rename inside it)."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def unlink(self, path: Path) -> None:
        """Remove a file if it exists."""
        path.unlink(missing_ok=True)


LOCAL_FS = FileSystem()

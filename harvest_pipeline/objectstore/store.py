"""Objects in one bucket location: uploads verified by reading them back, listings, downloads.

S3 has no rename, so nothing here pretends to move an object: writers give each object its final name once, and a
reader learns that a group of objects is complete from a marker written after them (for segments: the sidecar).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from harvest_pipeline.objectstore.location import BucketLocation

CHUNK_BYTES = 8 * 1024 * 1024


def file_digest(path: Path) -> tuple[int, str]:
    """Size and sha256 of a local file."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class UploadMismatch(OSError):
    """An object read back differs from what was meant to be stored (size or sha256)."""


@dataclass(frozen=True)
class ObjectInfo:
    """One object: its name relative to the location's prefix, and its size."""

    name: str
    size: int


class ObjectStore:
    """The objects under one ``BucketLocation``, through one pyarrow S3 filesystem. Names are relative to the prefix
    and use ``/``. Every method may raise ``OSError`` (pyarrow's errors for a failed request are ``OSError`` s)."""

    def __init__(self, location: BucketLocation, fs: pafs.FileSystem):
        self.location = location
        self.fs = fs

    def put_file(self, local: Path, name: str) -> None:
        """Upload a local file under ``name`` (multipart for large files), replacing any object of that name."""
        with open(local, "rb") as source, self.fs.open_output_stream(self.location.key(name)) as target:
            while chunk := source.read(CHUNK_BYTES):
                target.write(chunk)

    def digest(self, name: str) -> tuple[int, str]:
        """Size and sha256 of the stored object, computed from its bytes as the server returns them."""
        digest, size = hashlib.sha256(), 0
        with self.fs.open_input_stream(self.location.key(name)) as source:
            while chunk := source.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
        return size, digest.hexdigest()

    def put_verified(self, local: Path, name: str, size: int, sha256: str) -> None:
        """Upload ``local`` as ``name`` and read it back: ``UploadMismatch`` unless the stored bytes have ``size``
        and ``sha256`` (the values the data was sealed with, not recomputed from the local copy)."""
        self.put_file(local, name)
        stored = self.digest(name)
        if stored != (size, sha256):
            raise UploadMismatch(
                f"{self.location.key(name)}: stored {stored[0]} bytes sha256 {stored[1][:12]}…, "
                f"expected {size} bytes sha256 {sha256[:12]}…"
            )

    def put_bytes(self, name: str, data: bytes) -> None:
        """Store ``data`` as object ``name`` in one request (small objects: manifests), read back and compared."""
        with self.fs.open_output_stream(self.location.key(name)) as target:
            target.write(data)
        if self.read_bytes(name) != data:
            raise UploadMismatch(f"{self.location.key(name)}: stored bytes differ from the {len(data)} bytes written")

    def exists(self, name: str) -> bool:
        """Whether an object ``name`` exists."""
        return self.fs.get_file_info(self.location.key(name)).type == pafs.FileType.File

    def list_objects(self, folder: str = "") -> list[ObjectInfo]:
        """Every object under ``folder`` (recursively), sorted by name; an absent folder has none."""
        base = self.location.key(folder)
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        root = self.location.key("")
        start = len(root) + 1 if root else 0
        found = [
            ObjectInfo(info.path[start:], info.size or 0)
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
        ]
        return sorted(found, key=lambda info: info.name)

    def folders(self, folder: str) -> list[str]:
        """The names of the folders (common prefixes) directly under ``folder``, sorted; none when it is absent."""
        base = self.location.key(folder)
        selector = pafs.FileSelector(base, recursive=False, allow_not_found=True)
        return sorted(
            info.path.rsplit("/", 1)[-1]
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.Directory
        )

    def read_bytes(self, name: str) -> bytes:
        """The whole object (for small ones: sidecars, manifests)."""
        with self.fs.open_input_stream(self.location.key(name)) as source:
            return bytes(source.read())

    def download(self, name: str, local: Path) -> None:
        """Copy object ``name`` to ``local``, atomically (a temporary file renamed into place)."""
        local.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as target, self.fs.open_input_stream(self.location.key(name)) as source:
                while chunk := source.read(CHUNK_BYTES):
                    target.write(chunk)
            os.replace(temporary, local)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def delete(self, name: str) -> None:
        """Remove object ``name`` (absent: nothing to do)."""
        try:
            self.fs.delete_file(self.location.key(name))
        except FileNotFoundError:
            return

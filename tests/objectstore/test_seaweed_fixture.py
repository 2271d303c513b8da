"""The SeaweedFS fixture is a real, authenticated S3 endpoint for pyarrow: objects round-trip byte for byte (small and
multipart), unsigned or wrongly signed requests are refused, and a stop/start keeps the data while clients fail fast
in between, which is what the outage tests of the pipeline rely on."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from pyarrow import fs as pafs

from tests.objectstore.seaweed import SeaweedS3

FAIL_FAST_S = 5.0
READ_VIA_ENV = """
import sys
from pyarrow import fs
filesystem, path = fs.FileSystem.from_uri(sys.argv[1])
with filesystem.open_input_stream(path) as stream:
    sys.stdout.buffer.write(stream.readall())
"""


def write(filesystem: pafs.S3FileSystem, path: str, payload: bytes, chunk: int = 1 << 20) -> None:
    with filesystem.open_output_stream(path) as out:
        for start in range(0, len(payload), chunk):
            out.write(payload[start : start + chunk])


def read(filesystem: pafs.S3FileSystem, path: str) -> bytes:
    with filesystem.open_input_stream(path) as stream:
        return stream.readall()


def files_under(filesystem: pafs.S3FileSystem, base: str) -> dict[str, int]:
    infos = filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
    return {info.path: info.size for info in infos if info.type == pafs.FileType.File}


def test_objects_round_trip_and_only_signed_requests_get_in(seaweed: SeaweedS3) -> None:
    s3 = seaweed.filesystem()
    path = f"{seaweed.bucket}/segments/date=2026-01-01/part-0.jsonl"
    payload = os.urandom(4096) + b"\n"
    write(s3, path, payload)

    assert files_under(s3, seaweed.bucket) == {path: len(payload)}
    assert read(s3, path) == payload

    forged = seaweed.filesystem(secret_key="not-the-secret")
    anonymous = seaweed.filesystem(access_key=None, secret_key=None, anonymous=True)
    for intruder in (forged, anonymous):
        with pytest.raises(OSError):
            read(intruder, path)
        with pytest.raises(OSError):
            write(intruder, f"{seaweed.bucket}/intruder.txt", b"x")
    assert files_under(s3, seaweed.bucket) == {path: len(payload)}, "a refused write leaves nothing behind"

    # a separate process configured only through env() sees the same object (pyarrow takes AWS_ENDPOINT_URL in
    # FileSystem.from_uri, not in a bare S3FileSystem())
    child = subprocess.run(
        [sys.executable, "-c", READ_VIA_ENV, f"s3://{path}"],
        env={**os.environ, **seaweed.env()},
        capture_output=True,
        timeout=30,
    )
    assert child.returncode == 0, child.stderr.decode(errors="replace")
    assert child.stdout == payload


def test_a_stopped_server_fails_fast_and_a_restart_keeps_the_objects(seaweed: SeaweedS3) -> None:
    s3 = seaweed.filesystem()
    before = f"{seaweed.bucket}/outage/before.bin"
    write(s3, before, b"written before the outage")
    endpoint = seaweed.endpoint

    seaweed.stop()
    for attempt in (lambda: write(s3, f"{seaweed.bucket}/outage/during.bin", b"lost"), lambda: read(s3, before)):
        began = time.monotonic()
        with pytest.raises(OSError):
            attempt()
        assert time.monotonic() - began < FAIL_FAST_S, "a client must see the outage as an error, not hang"

    seaweed.start()
    assert seaweed.endpoint == endpoint, "clients keep their endpoint across the outage"
    assert read(s3, before) == b"written before the outage", "the same client works again after the restart"
    after = f"{seaweed.bucket}/outage/after.bin"
    write(s3, after, b"written after the outage")
    assert files_under(seaweed.filesystem(), f"{seaweed.bucket}/outage") == {before: 25, after: 24}


def test_a_20_mb_object_round_trips_through_multipart_upload(seaweed: SeaweedS3) -> None:
    s3 = seaweed.filesystem()
    path = f"{seaweed.bucket}/big/object.bin"
    payload = os.urandom(20 * 1024 * 1024)
    write(s3, path, payload)

    assert s3.get_file_info(path).size == len(payload)
    assert hashlib.sha256(read(s3, path)).digest() == hashlib.sha256(payload).digest()
    assert multipart_parts(seaweed, path) >= 2, "pyarrow uploaded it in several parts and SeaweedFS joined them"


def multipart_parts(seaweed: SeaweedS3, path: str) -> int:
    """How many multipart parts SeaweedFS recorded for an object, read from its filer's (unauthenticated,
    loopback-only) metadata API."""
    url = f"http://127.0.0.1:{seaweed.ports['filer.port']}/buckets/{path}?metadata=true"
    with urllib.request.urlopen(url, timeout=10) as response:
        extended = json.load(response)["Extended"] or {}
    return int(base64.b64decode(extended.get("X-Seaweedfs-Multipart-Parts-Count", "MA==")))

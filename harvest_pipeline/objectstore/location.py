"""Where a bucket is (``s3://bucket/prefix``) and the S3 client for it, configured from the standard AWS environment."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow.fs as pafs

CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0
"""Per request: an unreachable server must cost a retry of the shipper, not a hung thread."""
SDK_ATTEMPTS = 3
"""The AWS SDK's own retries of one request; the callers retry whole transfers on top, with their own backoff."""


@dataclass(frozen=True)
class BucketLocation:
    """A bucket and a key prefix inside it (no leading or trailing slash; may be empty)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def from_url(cls, url: str) -> BucketLocation:
        """Parse ``s3://bucket[/prefix]``; ``ValueError`` naming what is wrong."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"object store {url!r} must look like s3://bucket/prefix")
        if parts.query or parts.fragment:
            raise ValueError(f"object store {url!r} must not carry a query or fragment")
        return cls(parts.netloc, parts.path.strip("/"))

    @property
    def url(self) -> str:
        """``s3://bucket/prefix``."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, relative: str) -> str:
        """The pyarrow path (``bucket/prefix/relative``) of an object named relative to the prefix."""
        return "/".join(part for part in (self.bucket, self.prefix, relative.strip("/")) if part)


def s3_filesystem(endpoint: str = "", environ: Mapping[str, str] | None = None) -> pafs.S3FileSystem:
    """An S3 client for ``endpoint`` (``http[s]://host:port``; empty: ``AWS_ENDPOINT_URL`` if set, else AWS itself),
    with credentials and region from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN`` and
    ``AWS_REGION``/``AWS_DEFAULT_REGION`` (without keys, the AWS SDK's own chain: config files, instance roles)."""
    env = os.environ if environ is None else environ
    endpoint = endpoint or env.get("AWS_ENDPOINT_URL", "")
    options: dict[str, object] = {
        "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        "connect_timeout": CONNECT_TIMEOUT_S,
        "request_timeout": REQUEST_TIMEOUT_S,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=SDK_ATTEMPTS),
    }
    if env.get("AWS_ACCESS_KEY_ID"):
        options.update(access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env.get("AWS_SECRET_ACCESS_KEY", ""))
        if env.get("AWS_SESSION_TOKEN"):
            options["session_token"] = env["AWS_SESSION_TOKEN"]
    if endpoint:
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"S3 endpoint {endpoint!r} must look like http[s]://host:port")
        options.update(endpoint_override=parts.netloc, scheme=parts.scheme)
    return pafs.S3FileSystem(**options)

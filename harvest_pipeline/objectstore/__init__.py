"""S3-compatible object storage for segments (and, later, Parquet): where a bucket is, and verified transfers.

Built on ``pyarrow.fs.S3FileSystem`` (the AWS SDK for C++ inside pyarrow, already a dependency): multipart uploads,
retries, credentials from the standard AWS environment and ``endpoint_override`` for any S3-compatible server
(SeaweedFS, MinIO, Ceph), and the same filesystem object ``pyarrow.dataset`` reads Parquet through. Modules:
``location`` (``s3://bucket/prefix`` and the client built from the environment), ``store`` (put with read-back
verification, list, get).
"""

from harvest_pipeline.objectstore.location import BucketLocation, s3_filesystem
from harvest_pipeline.objectstore.store import ObjectInfo, ObjectStore, UploadMismatch, file_digest

__all__ = ["BucketLocation", "ObjectInfo", "ObjectStore", "UploadMismatch", "file_digest", "s3_filesystem"]

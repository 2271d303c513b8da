"""``s3://bucket/prefix`` parsing, object keys, and the settings refusing a bucket or endpoint they cannot use."""

from __future__ import annotations

import pytest

from harvest_pipeline.objectstore import BucketLocation, s3_filesystem
from harvest_pipeline.settings import load_settings


def test_a_location_names_the_bucket_and_the_prefix_and_builds_keys():
    location = BucketLocation.from_url("s3://market-data/harvest/tokyo/")
    assert (location.bucket, location.prefix, location.url) == (
        "market-data",
        "harvest/tokyo",
        "s3://market-data/harvest/tokyo",
    )
    assert location.key("segments/sealed/x.jsonl") == "market-data/harvest/tokyo/segments/sealed/x.jsonl"
    assert BucketLocation.from_url("s3://market-data").key("/a/") == "market-data/a"


@pytest.mark.parametrize("url", ["market-data/harvest", "http://market-data/harvest", "s3:///harvest", "s3://b/p?x=1"])
def test_anything_but_an_s3_url_is_refused_with_the_expected_shape(url):
    with pytest.raises(ValueError, match="s3://bucket/prefix|query"):
        BucketLocation.from_url(url)


def test_the_settings_check_the_bucket_and_the_endpoint():
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        load_settings(environ={"HARVEST_OBJECT_STORE": "market-data"})
    with pytest.raises(ValueError, match="s3_endpoint"):
        load_settings(environ={"HARVEST_OBJECT_STORE": "s3://b", "HARVEST_S3_ENDPOINT": "ftp://10.0.0.5"})
    settings = load_settings(
        environ={"HARVEST_OBJECT_STORE": "s3://b/p", "HARVEST_S3_ENDPOINT": "http://10.0.0.5:8333"}
    )
    assert (settings.object_store, settings.s3_endpoint) == ("s3://b/p", "http://10.0.0.5:8333")


def test_the_client_takes_its_endpoint_and_keys_from_the_environment():
    with pytest.raises(ValueError, match="http"):
        s3_filesystem("10.0.0.5:8333", environ={})
    client = s3_filesystem(
        "", environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    )
    options = client.__reduce__()[1][0]  # pyarrow pickles a filesystem as its options
    assert (options["endpoint_override"], options["scheme"], options["access_key"]) == ("127.0.0.1:9", "http", "k")
    assert client.region == "us-east-1" and options["request_timeout"] > 0

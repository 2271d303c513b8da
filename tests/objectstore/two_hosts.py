"""Two collectors on two "hosts" (their own data roots) shipping into one SeaweedFS bucket, for the end-to-end tests."""

from __future__ import annotations

import time
from pathlib import Path

from harvest_pipeline.objectstore import BucketLocation, ObjectStore
from harvest_pipeline.segments import META_SUFFIX, SEALED_SUFFIX
from tests.collector.harness import CollectorProcess, SimulatorProcess, wait_for
from tests.objectstore.seaweed import SeaweedS3

PREFIX = "team/usdm"


def shipped(collector: CollectorProcess) -> int:
    return collector.health()[1]["shipping"]["shipped_segments"]


def record_on_two_hosts(
    tmp_path: Path, seaweed: SeaweedS3, outage_s: float = 0.0, drop_all: bool = False
) -> tuple[dict, set[str]]:
    """Run both collectors until the simulator stops: frankfurt1 is killed with -9 midway; with ``outage_s`` the S3
    server is stopped that long while both record (their backlogs must drain after); with ``drop_all`` every
    connection of both is cut at once, with the REST backfill off, so both miss the same trades. Returns the
    simulator's accounting and the names of the segments in the bucket."""
    sim = SimulatorProcess(tmp_path, symbols="BTCUSDT,ETHUSDT", rate=2.0)
    bucket = {"object_store": f"s3://{seaweed.bucket}/{PREFIX}", "segment_max_age_s": 1.0, "ship_retry_max_s": 2.0}
    if drop_all:
        bucket["backfill"] = False
    hosts = {name: tmp_path / name for name in ("tokyo", "frankfurt")}
    for host in hosts.values():
        host.mkdir()
    tokyo = CollectorProcess(
        hosts["tokyo"], sim, seaweed.env(), collector_id="tokyo1", symbols=("BTCUSDT", "ETHUSDT"), **bucket
    )
    frankfurt = CollectorProcess(hosts["frankfurt"], sim, seaweed.env(), collector_id="frankfurt1", **bucket)
    try:
        wait_for(lambda: shipped(tokyo) >= 2 and shipped(frankfurt) >= 2, 30, "both collectors shipping")
        if outage_s:
            seaweed.stop()
            time.sleep(outage_s)
            assert backlog(tokyo) > 0 and backlog(frankfurt) > 0, "both piled up segments during the outage"
            seaweed.start()
            wait_for(lambda: backlog(tokyo) == 0 and backlog(frankfurt) == 0, 60, "both backlogs drained")
        if drop_all:
            sim.fault({"fault": "drop_all"})
            time.sleep(2.0)
        frankfurt.kill()
        time.sleep(3.0)
        accounting = sim.stop()
        assert tokyo.terminate() == 0
    finally:
        for process in (tokyo.process, frankfurt.process, sim.process):
            if process.poll() is None:
                process.kill()
    return accounting, names_in_bucket(seaweed)


def backlog(collector: CollectorProcess) -> int:
    return collector.health()[1]["shipping"]["backlog_segments"]


def names_in_bucket(seaweed: SeaweedS3) -> set[str]:
    """The complete segments in the bucket: data object and sidecar (a collector killed between the two leaves a data
    object alone, which no reader takes)."""
    objects = ObjectStore(BucketLocation(seaweed.bucket, PREFIX), seaweed.filesystem()).list_objects("segments")
    names = {o.name for o in objects}
    return {
        name.rsplit("/", 1)[-1].removesuffix(SEALED_SUFFIX)
        for name in names
        if name.endswith(SEALED_SUFFIX) and name + META_SUFFIX in names
    }


def bucket_env(seaweed: SeaweedS3) -> dict[str, str]:
    """What a compaction host needs to read the bucket: the installation's two settings and the AWS credentials."""
    return {
        **seaweed.env(),
        "HARVEST_OBJECT_STORE": f"s3://{seaweed.bucket}/{PREFIX}",
        "HARVEST_S3_ENDPOINT": seaweed.endpoint,
    }

"""End to end: ``harvest collect`` ships into a real SeaweedFS bucket while the S3 server goes away for 30 s. The
outage costs local disk (the backlog is counted and reported), never data: after the server is back the backlog
drains, and the segments read back from the bucket alone reconcile per stream with what the simulator sent."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

from harvest_pipeline import segments
from harvest_pipeline.objectstore import BucketLocation, ObjectStore
from tests.collector.harness import CollectorProcess, SimulatorProcess, records_of, sent_per_stream, wait_for
from tests.collector.sealed import frames_per_stream, load_sealed_records, lost_per_stream
from tests.objectstore.seaweed import SeaweedS3

OUTAGE_S = 30.0
PREFIX = "team/usdm"


def shipping(collector: CollectorProcess) -> dict[str, Any]:
    return collector.health()[1]["shipping"]


def metric(collector: CollectorProcess, name: str) -> float:
    """One unlabelled sample of the collector's ``/metrics``."""
    with urllib.request.urlopen(f"{collector.info['metrics_url']}/metrics", timeout=5) as response:
        text = response.read().decode()
    [value] = [line.split()[1] for line in text.splitlines() if line.split(" ")[0] == name]
    return float(value)


def test_a_30_s_outage_of_the_bucket_costs_disk_not_data(tmp_path: Path, seaweed: SeaweedS3) -> None:
    sim = SimulatorProcess(tmp_path, rate=2.0)
    collector = CollectorProcess(
        tmp_path,
        sim,
        extra_env=seaweed.env(),
        object_store=f"s3://{seaweed.bucket}/{PREFIX}",
        segment_max_age_s=1.0,
        ship_retry_initial_s=0.5,
        ship_retry_max_s=2.0,
    )
    sealed_root = tmp_path / "data" / "segments" / "sealed"
    try:
        wait_for(lambda: shipping(collector)["shipped_segments"] >= 2, 30, "the first segments shipped")
        seaweed.stop()
        time.sleep(OUTAGE_S)
        status, during = collector.health()
        backlog_metric = metric(collector, "harvest_ship_backlog_segments")
        local_during = len(segments.list_sealed_segments(sealed_root))
        seaweed.start()
        wait_for(
            lambda: (s := shipping(collector))["backlog_segments"] == 0 and s["last_error"] is None,
            60,
            "the backlog drained",
        )
        drained = collector.health()
        shipped_metric = metric(collector, "harvest_shipped_segments_total")
        accounting = sim.stop()
        assert collector.terminate() == 0
    finally:
        for process in (collector.process, sim.process):
            if process.poll() is None:
                process.kill()

    backlog = during["shipping"]
    assert status == 503 and any(p.startswith("shipping to s3://") for p in during["problems"]), during["problems"]
    assert backlog["backlog_segments"] >= 15 and backlog["failures"] >= 3, "a segment a second piled up locally"
    assert local_during >= backlog["backlog_segments"], "the backlog is on local disk"
    assert backlog_metric >= 15 and shipped_metric >= backlog_metric, "the metrics say the same"
    assert drained[0] == 200 or not any(p.startswith("shipping") for p in drained[1]["problems"])
    assert len(segments.list_sealed_segments(sealed_root)) == 1, "only the newest local copy stays, for resume"

    store = ObjectStore(BucketLocation(seaweed.bucket, PREFIX), seaweed.filesystem())
    copy = tmp_path / "from-bucket" / "sealed"
    names = {info.name for info in store.list_objects(segments.SEALED_OBJECT_FOLDER)}
    complete = sorted(n for n in names if n.endswith(segments.SEALED_SUFFIX) and n + segments.META_SUFFIX in names)
    assert len(names) == 2 * len(complete), "no data object without its sidecar, nor the reverse"
    for name in complete:
        for object_name in (name, name + segments.META_SUFFIX):
            store.download(object_name, copy / object_name.removeprefix(segments.SEALED_OBJECT_FOLDER + "/"))
    records = load_sealed_records(copy)
    stored, lost = frames_per_stream(records), lost_per_stream(records)
    for stream, sent in sent_per_stream(accounting).items():
        assert stored[stream] + lost[stream] == sent, (stream, sent, stored[stream], lost[stream])
    assert not records_of(records, "write_loss"), "the outage cost disk, not a single frame"

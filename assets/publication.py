"""``publish_parquet``: with an object store, mirrors the local Parquet store to the bucket (``store.publish``).

One op over every kind folder that changed since the last pass (unchanged ones cost a ``stat`` per file); a schedule
runs it every minute and skips while one is still running or when the installation has no bucket. Readers of the
bucket (``hp.open("s3://…")``) see a folder's files only once its manifest lists them.
"""

import dagster as dg

from assets.resources import HarvestStorage
from harvest_pipeline.objectstore import BucketLocation, ObjectStore, s3_filesystem
from harvest_pipeline.store.publish import publish_store, state_path_of

PUBLISH_JOB_NAME = "publish_parquet"


@dg.op(description="Upload the Parquet folders that changed and swap their manifests in the bucket.")
def publish_changed_folders(context: dg.OpExecutionContext, storage: HarvestStorage) -> dg.Output[int]:
    """Publish, and report what was uploaded, deleted and left unchanged."""
    settings = storage.settings()
    if not settings.object_store:
        context.log.info("no object store configured (HARVEST_OBJECT_STORE): nothing to publish")
        return dg.Output(0)
    paths = settings.paths()
    store = ObjectStore(BucketLocation.from_url(settings.object_store), s3_filesystem(settings.s3_endpoint))
    result = publish_store(paths.parquet, store, state_path_of(paths.root))
    context.log.info(
        f"published {len(result.published)} folder(s) to {store.location.url}: {result.uploaded} object(s), "
        f"{result.uploaded_bytes / 1e6:.1f} MB; {result.deleted} retired object(s) deleted; "
        f"{result.unchanged} folder(s) unchanged"
    )
    return dg.Output(
        len(result.published),
        metadata={
            "folders_published": len(result.published),
            "objects_uploaded": result.uploaded,
            "bytes_uploaded": result.uploaded_bytes,
            "objects_deleted": result.deleted,
            "folders_unchanged": result.unchanged,
        },
    )


@dg.job(name=PUBLISH_JOB_NAME, description="Mirror the local Parquet store to the bucket, folder by folder.")
def publish_parquet() -> None:
    """One op: the publication pass."""
    publish_changed_folders()


@dg.schedule(
    job=publish_parquet,
    cron_schedule="* * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every minute with an object store: publish the Parquet folders that changed.",
)
def publish_parquet_schedule(
    context: dg.ScheduleEvaluationContext, storage: HarvestStorage
) -> dg.RunRequest | dg.SkipReason:
    """Skip without a bucket, and while a publication is queued or running (one at a time)."""
    if not storage.settings().object_store:
        return dg.SkipReason("no object store configured (HARVEST_OBJECT_STORE)")
    active = context.instance.get_runs(
        filters=dg.RunsFilter(
            job_name=PUBLISH_JOB_NAME,
            statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED],
        ),
        limit=1,
    )
    if active:
        return dg.SkipReason(f"publication {active[0].run_id} is still running")
    return dg.RunRequest()


PUBLICATION_JOBS = [publish_parquet]
PUBLICATION_SCHEDULES = [publish_parquet_schedule]

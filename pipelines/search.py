"""The search index in Dagster: the asset, its hourly update and the daily optimisation.

The index is updated by an hourly schedule at minute 40, after the backups that the
backup schedules start at minute 0 (their default cron). A schedule is used rather than
an automation condition on the asset for two reasons:

- ``AutomationCondition.eager()`` does not run while any upstream partition is missing
  or in progress. With one dynamic partition per mailbox and drive, a mailbox whose
  backup keeps failing, or one the directory sensor just added, would stop the index
  from being updated for every other mailbox.
- Automation conditions also need the automation condition sensor to be running, while
  a schedule runs wherever the backup schedules run: under the Dagster daemon.

An update reads only the commits since the last one, so an hour without backups costs
little. The update and the optimisation both take the index lease, so
a run that starts while the retention job's update runs fails with a message naming
the holder, and the next tick catches up.
"""

import dagster as dg

from m365lake.search.index import index_path, update_index
from m365lake.search.optimize import optimize_index
from pipelines.assets import drive_archive, mailbox_archive
from pipelines.cron import cron_from_env
from pipelines.resources import LakeResource

SEARCH_INDEX_CRON = "40 * * * *"
"""Hourly at minute 40, 40 minutes after the hourly backups start. Items of a backup still
running then are indexed at the next tick."""
SEARCH_INDEX_CRON_VARIABLE = "M365LAKE_SEARCH_INDEX_CRON"
SEARCH_INDEX_OPTIMIZE_CRON = "10 4 * * *"
"""Daily at 04:10 in the Dagster instance's time zone: after the 02:30 retention purge,
which deletes documents, and away from the hourly updates at minute 40."""
SEARCH_INDEX_OPTIMIZE_CRON_VARIABLE = "M365LAKE_SEARCH_OPTIMIZE_CRON"


@dg.asset(
    deps=[mailbox_archive, drive_archive],
    group_name="search",
    kinds={"tantivy"},
    description=(
        "The Tantivy index of every archived message and file for KQL search: one "
        "document per item (latest version, deleted items kept with deleted_at), updated "
        "incrementally from the lake's commits; purged items are removed."
    ),
)
def search_index(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
    archive = lake.open()
    update = update_index(
        archive,
        owner=f"dagster-{context.run.run_id}",
        progress=lambda progress: context.log.info(
            f"indexed up to commit {progress.manifest_seq}: "
            f"{progress.documents_added} added, {progress.documents_replaced} replaced"
        ),
    )
    context.log.info(update.describe())
    return dg.MaterializeResult(
        metadata={
            "commits_read": update.manifests,
            "indexed_up_to_commit": update.manifest_seq,
            "rebuilt": update.rebuilt,
            "documents_added": update.documents_added,
            "documents_replaced": update.documents_replaced,
            "deleted_in_tenant": update.marked_deleted,
            "removed_by_purges": update.documents_removed,
            "partially_indexed": update.partially_indexed,
            "documents_total": update.documents_total,
            "partially_indexed_total": update.partially_indexed_total,
            "index_bytes": dg.MetadataValue.int(update.index_bytes),
            "seconds": float(round(update.seconds, 2)),
            "index": dg.MetadataValue.path(str(index_path(archive))),
        }
    )


search_index_job = dg.define_asset_job(
    "search_index_job",
    selection=[search_index],
    description="Bring the search index up to date with the lake's commits.",
)

search_index_schedule = dg.ScheduleDefinition(
    name="search_index_schedule",
    job=search_index_job,
    cron_schedule=cron_from_env(SEARCH_INDEX_CRON_VARIABLE, SEARCH_INDEX_CRON),
    # On by default, like the backup schedules: new mail must become searchable without
    # someone switching the update on.
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly incremental update of the search index, after the backups.",
)


@dg.op(
    description="Merge the search index's segments and delete the files it no longer uses.",
    # An index update holding the lease makes the optimisation fail at once; a retry
    # some minutes later runs after that update.
    retry_policy=dg.RetryPolicy(max_retries=3, delay=300),
)
def optimize_search_index(context: dg.OpExecutionContext, lake: LakeResource) -> None:
    optimization = optimize_index(lake.open(), owner=f"dagster-{context.run.run_id}")
    context.log.info(optimization.describe())
    context.log_event(
        dg.AssetObservation(
            asset_key=search_index.key,
            metadata={
                "segments_before": optimization.segments_before,
                "segments_after": optimization.segments_after,
                "index_bytes_before": dg.MetadataValue.int(optimization.bytes_before),
                "index_bytes_after": dg.MetadataValue.int(optimization.bytes_after),
                "documents": optimization.documents,
                "leftover_folders_removed": optimization.leftover_folders_removed,
                "seconds": float(round(optimization.seconds, 2)),
            },
        )
    )


@dg.job(description="Merge the search index's segments and delete its unused files.")
def search_index_optimize_job() -> None:
    optimize_search_index()


search_index_optimize_schedule = dg.ScheduleDefinition(
    name="search_index_optimize_schedule",
    job=search_index_optimize_job,
    cron_schedule=cron_from_env(SEARCH_INDEX_OPTIMIZE_CRON_VARIABLE, SEARCH_INDEX_OPTIMIZE_CRON),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily merge of the search index's segments, after the retention purge.",
)

"""Calendar backup asset and its schedule: thin wiring around ``m365lake.backup_calendar``."""

import asyncio

import dagster as dg

from m365lake.backup_calendar import backup_calendars
from m365lake.catalog import refresh_catalog
from pipelines.assets import GRAPH_POOL
from pipelines.metadata import graph_metadata
from pipelines.partitions import mailbox_partitions
from pipelines.resources import GraphResource, LakeResource
from pipelines.schedules import BACKUP_CRON_VARIABLE, backup_cron, partition_run_requests


@dg.asset(
    partitions_def=mailbox_partitions,
    pool=GRAPH_POOL,
    group_name="calendar",
    kinds={"parquet"},
    description=(
        "Every calendar event of one mailbox with Graph's whole JSON: singles, series "
        "masters with their cancelled occurrences, and exceptions; one row per captured "
        "version, attachments in blobs, deletions recorded; changes found by changeKey."
    ),
)
def calendar_archive(
    context: dg.AssetExecutionContext, graph: GraphResource, lake: LakeResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    user = context.partition_key
    archive = lake.open()
    # Fail before any Graph traffic rather than after listing a whole calendar.
    archive.check_writable()
    summary = asyncio.run(backup_calendars(graph.settings(), archive, users=[user]))
    if user in summary.skipped:
        return dg.MaterializeResult(metadata={"skipped": summary.skipped[user]})
    if not summary.results:
        reason = summary.failed.get(user, "no result")
        raise dg.Failure(description=f"calendars of {user} were not archived: {reason}")
    result = summary.results[0]
    refresh_catalog(archive)
    return dg.MaterializeResult(
        metadata={
            "mailbox_id": result.mailbox.mailbox_id,
            "run_id": result.run_id,
            "commit_seq": result.commit_seq,
            "calendars": result.calendars,
            "events_new": result.events_new,
            "events_updated": result.events_updated,
            "events_deleted": result.events_deleted,
            "events_unchanged": result.events_unchanged,
            "exceptions": result.exceptions,
            "cancelled_occurrences": result.cancelled_occurrences,
            "attachments": result.attachments,
            "failures": result.failures,
            "bytes_downloaded": dg.MetadataValue.int(result.bytes_downloaded),
            "blobs_written": result.blobs_written,
            **graph_metadata(summary.graph),
            "lake": dg.MetadataValue.path(archive.location),
        }
    )


@dg.schedule(
    cron_schedule=backup_cron(),
    target=[calendar_archive],
    name="calendar_backup_schedule",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        f"Incremental calendar backup of every mailbox partition (cron from "
        f"{BACKUP_CRON_VARIABLE})."
    ),
)
def calendar_backup_schedule(
    context: dg.ScheduleEvaluationContext,
) -> dg.RunRequest | dg.SkipReason | list[dg.RunRequest]:
    return partition_run_requests(context, mailbox_partitions)

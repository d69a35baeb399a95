"""Contacts backup asset and its schedule: thin wiring around ``m365lake.backup_contacts``."""

import asyncio

import dagster as dg

from m365lake.backup_contacts import backup_contacts, contact_totals
from m365lake.catalog import refresh_catalog
from pipelines.assets import GRAPH_POOL
from pipelines.metadata import graph_metadata
from pipelines.partitions import mailbox_partitions
from pipelines.resources import GraphResource, LakeResource
from pipelines.schedules import BACKUP_CRON_VARIABLE, backup_cron, partition_run_requests


@dg.asset(
    partitions_def=mailbox_partitions,
    pool=GRAPH_POOL,
    group_name="contacts",
    kinds={"parquet"},
    description=(
        "Every Outlook contact of one mailbox with Graph's whole JSON: one row per captured "
        "version, folders tracked by id, deletions recorded; incremental through per-folder "
        "contact delta."
    ),
)
def contacts_archive(
    context: dg.AssetExecutionContext, graph: GraphResource, lake: LakeResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    user = context.partition_key
    archive = lake.open()
    archive.check_writable()
    summary = asyncio.run(backup_contacts(graph.settings(), archive, users=[user]))
    if user in summary.skipped:
        return dg.MaterializeResult(metadata={"skipped": summary.skipped[user]})
    if not summary.results:
        reason = summary.failed.get(user, "no result")
        raise dg.Failure(description=f"contacts of {user} were not archived: {reason}")
    result = summary.results[0]
    refresh_catalog(archive)
    totals = contact_totals(archive, result.mailbox.mailbox_id)
    return dg.MaterializeResult(
        metadata={
            "mailbox_id": result.mailbox.mailbox_id,
            "run_id": result.run_id,
            "commit_seq": result.commit_seq,
            "contact_folders": result.folders,
            "contacts_new": result.contacts_new,
            "contacts_updated": result.contacts_updated,
            "contacts_deleted": result.contacts_deleted,
            "failures": result.failures,
            "resyncs": result.resyncs,
            "bytes_archived": dg.MetadataValue.int(result.bytes_archived),
            "blobs_written": result.blobs_written,
            **graph_metadata(summary.graph),
            "live_contacts": totals["live_contacts"],
            "contact_versions": totals["contact_versions"],
            "contact_version_bytes": dg.MetadataValue.int(totals["contact_version_bytes"]),
            "lake": dg.MetadataValue.path(archive.location),
        }
    )


@dg.schedule(
    cron_schedule=backup_cron(),
    target=[contacts_archive],
    name="contacts_backup_schedule",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        f"Incremental contacts backup of every mailbox partition (cron from "
        f"{BACKUP_CRON_VARIABLE})."
    ),
)
def contacts_backup_schedule(
    context: dg.ScheduleEvaluationContext,
) -> dg.RunRequest | dg.SkipReason | list[dg.RunRequest]:
    return partition_run_requests(context, mailbox_partitions)

"""Backup assets: thin wiring around ``m365lake.backup``."""

import asyncio

import dagster as dg

from m365lake.backup import backup_mail
from m365lake.backup_files import backup_files
from m365lake.catalog import refresh_catalog
from pipelines.metadata import archive_metadata, graph_metadata
from pipelines.partitions import drive_partitions, mailbox_partitions
from pipelines.resources import GraphResource, LakeResource

GRAPH_POOL = "graph"
"""Concurrency pool shared by every asset that calls Graph; sized in dagster.yaml."""


@dg.asset(
    partitions_def=mailbox_partitions,
    pool=GRAPH_POOL,
    group_name="mail",
    kinds={"parquet"},
    description=(
        "Every message of one Exchange Online mailbox: one row per captured version, "
        "MIME kept byte-exact, deletions recorded; incremental through per-folder delta."
    ),
)
def mailbox_archive(
    context: dg.AssetExecutionContext, graph: GraphResource, lake: LakeResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    user = context.partition_key
    archive = lake.open()
    # Fail before any Graph traffic rather than after downloading a whole mailbox.
    archive.check_writable()
    summary = asyncio.run(
        backup_mail(
            graph.settings(),
            archive,
            users=[user],
            heartbeat=lambda progress: context.log.info(f"{user}: {progress.describe()}"),
        )
    )
    if user in summary.skipped:
        return dg.MaterializeResult(metadata={"skipped": summary.skipped[user]})
    if not summary.results:
        reason = summary.failed.get(user, "no result")
        raise dg.Failure(description=f"mailbox {user} was not archived: {reason}")
    result = summary.results[0]
    refresh_catalog(archive)
    return dg.MaterializeResult(
        metadata={
            "mailbox_id": result.mailbox.mailbox_id,
            "run_id": result.run_id,
            "commit_seq": result.commit_seq,
            "folders": result.folders,
            "messages_new": result.messages_new,
            "messages_updated": result.messages_updated,
            "messages_deleted": result.messages_deleted,
            "failures": result.failures,
            "pending_retries": result.pending_retries,
            "resyncs": result.resyncs,
            "bytes_downloaded": dg.MetadataValue.int(result.bytes_downloaded),
            "blobs_written": result.blobs_written,
            **graph_metadata(summary.graph),
            **archive_metadata(
                archive, "mail", result.mailbox.mailbox_id, result.run_id, result.started_at
            ),
            "lake": dg.MetadataValue.path(archive.location),
        }
    )


@dg.asset(
    partitions_def=drive_partitions,
    pool=GRAPH_POOL,
    group_name="files",
    kinds={"parquet"},
    description=(
        "Every file of one OneDrive or SharePoint document library: one row per captured "
        "version with QuickXorHash and SHA-256, content in blobs, coverage gaps recorded; "
        "incremental through drive delta."
    ),
)
def drive_archive(
    context: dg.AssetExecutionContext, graph: GraphResource, lake: LakeResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    drive_id = context.partition_key
    archive = lake.open()
    archive.check_writable()
    summary = asyncio.run(backup_files(graph.settings(), archive, drives=[drive_id]))
    if drive_id in summary.skipped:
        return dg.MaterializeResult(metadata={"skipped": summary.skipped[drive_id]})
    if not summary.results:
        reason = summary.failed.get(drive_id, "no result")
        raise dg.Failure(description=f"drive {drive_id} was not archived: {reason}")
    result = summary.results[0]
    refresh_catalog(archive)
    return dg.MaterializeResult(
        metadata={
            "drive": result.drive.name or drive_id,
            "owner": result.drive.owner_name or result.drive.owner_id,
            "owner_kind": result.drive.owner_kind,
            "run_id": result.run_id,
            "commit_seq": result.commit_seq,
            "items_new": result.items_new,
            "items_updated": result.items_updated,
            "items_deleted": result.items_deleted,
            "content_reused": result.content_reused,
            "failures": result.failures,
            "resumes": result.resumes,
            "resyncs": result.resyncs,
            "bytes_downloaded": dg.MetadataValue.int(result.bytes_downloaded),
            "blobs_written": result.blobs_written,
            **graph_metadata(summary.graph),
            **archive_metadata(archive, "files", drive_id, result.run_id, result.started_at),
            "lake": dg.MetadataValue.path(archive.location),
        }
    )

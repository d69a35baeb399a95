"""Asset checks: backup counts against the source, failure rates, and lake integrity.

The mailbox and drive checks run in each partition's backup run and check the mailbox or
drive it archived. They read the partition from the run's tags rather than being
partitioned checks, which Dagster 1.13 still marks as a preview feature. They only warn:
a warning asks an administrator to look, and the next incremental run usually settles a
count that moved meanwhile. The integrity
check hashes every committed table file, so it runs once a day before the purge rather
than after every partition's backup.
"""

import asyncio

import dagster as dg

from m365lake.catalog import connect
from m365lake.discovery import verify_archive
from m365lake.drive_counts import DriveFileCount, compare_drive_files
from m365lake.errors import LakeIntegrityError
from m365lake.graph import GraphClient
from m365lake.mail_counts import archived_folder_counts, compare_folder_counts, source_folder_counts
from m365lake.sources.mailboxes import get_mailbox
from pipelines.assets import GRAPH_POOL, drive_archive, mailbox_archive
from pipelines.resources import GraphResource, LakeResource
from pipelines.retention import retention_plan

FAILURE_RATE_WARNING = 0.01
"""Share of a container's archived items recorded as failed that raises a warning."""

BLOB_SAMPLE = 50
"""Blobs read back and hashed by each integrity check; ``m365lake verify`` reads all."""

_ROWS_SHOWN = 20


def _partition_key(context: dg.AssetCheckExecutionContext) -> str:
    key = context.run.tags.get("dagster/partition")
    if not key:
        raise dg.Failure(
            description=(
                "this check needs the partition of the backup it checks: run it together "
                "with a mailbox or drive partition's materialization"
            )
        )
    return key


async def _folder_counts(graph: GraphResource, user: str) -> tuple[str, dict[str, tuple[str, int]]]:
    async with GraphClient(graph.settings()) as client:
        mailbox = await get_mailbox(client, user)
        return mailbox.mailbox_id, await source_folder_counts(client, mailbox.mailbox_id)


@dg.asset_check(
    asset=mailbox_archive,
    # It lists the mailbox's folders through Graph, so it takes a slot like a backup does.
    pool=GRAPH_POOL,
    description=(
        "Each folder's live archived messages against Exchange's totalItemCount. Exchange "
        "also counts non-mail items and mail that arrived after the backup, so this warns."
    ),
)
def mailbox_count_matches_source(
    context: dg.AssetCheckExecutionContext, graph: GraphResource, lake: LakeResource
) -> dg.AssetCheckResult:
    mailbox_id, source = asyncio.run(_folder_counts(graph, _partition_key(context)))
    folders = compare_folder_counts(source, archived_folder_counts(lake.open(), mailbox_id))
    differing = [folder for folder in folders if not folder.matches]
    table = "\n".join(
        f"| {folder.name or folder.folder_id} | {folder.source} | {folder.archived} |"
        for folder in differing[:_ROWS_SHOWN]
    )
    return dg.AssetCheckResult(
        passed=not differing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "folders": len(folders),
            "folders_differing": len(differing),
            "source_items": sum(folder.source or 0 for folder in folders),
            "archived_messages": sum(folder.archived for folder in folders),
            "differences": dg.MetadataValue.md(
                f"| folder | Exchange | archived |\n|---|---|---|\n{table}" if differing else "none"
            ),
        },
    )


async def _drive_file_count(
    graph: GraphResource, lake: LakeResource, drive_id: str
) -> DriveFileCount:
    async with GraphClient(graph.settings()) as client:
        return await compare_drive_files(client, lake.open(), drive_id)


@dg.asset_check(
    asset=drive_archive,
    description=(
        "The drive's live archived files against the file count Graph reports "
        "(quota.fileCount, or a full delta round when the drive omits it). Files added "
        "after the backup also differ, so this warns."
    ),
    pool=GRAPH_POOL,
)
def drive_count_matches_source(
    context: dg.AssetCheckExecutionContext, graph: GraphResource, lake: LakeResource
) -> dg.AssetCheckResult:
    count = asyncio.run(_drive_file_count(graph, lake, _partition_key(context)))
    return dg.AssetCheckResult(
        passed=count.matches,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "source_files": count.source,
            "source_basis": count.basis,
            "archived_files": count.archived,
            "difference": count.source - count.archived,
        },
    )


def _failure_rate_result(lake: LakeResource, container_id: str | None) -> dg.AssetCheckResult:
    """Judge the newest backup run of one mailbox or drive by its share of failed items."""
    run_id, changed, failed = None, 0, 0
    if container_id is not None:
        with connect(lake.open()) as db:
            latest = db.execute(
                "SELECT run_id, coalesce(items_new, 0) + coalesce(items_updated, 0) FROM runs "
                "WHERE container = ? ORDER BY started_at DESC LIMIT 1",
                [container_id],
            ).fetchone()
            if latest is not None:
                run_id, changed = str(latest[0]), int(latest[1])
                # Skipped items are coverage gaps with a stated reason (a OneNote package,
                # a file over the size limit), not failures.
                counted = db.execute(
                    "SELECT count(*) FROM failures WHERE run_id = ? AND outcome = 'failed'",
                    [run_id],
                ).fetchone()
                failed = int(counted[0]) if counted else 0
    rate = failed / max(changed + failed, 1)
    return dg.AssetCheckResult(
        passed=run_id is not None and rate <= FAILURE_RATE_WARNING,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if run_id else "no backup run of this partition is recorded",
        metadata={
            "run_id": run_id or "",
            "items_archived": changed,
            "items_failed": failed,
            "failure_rate": float(round(rate, 4)),
            "threshold": FAILURE_RATE_WARNING,
        },
    )


def _mailbox_id(lake: LakeResource, user: str) -> str | None:
    with connect(lake.open()) as db:
        row = db.execute(
            "SELECT mailbox_id FROM mailboxes WHERE lower(user_principal_name) = lower(?) "
            "ORDER BY captured_at DESC LIMIT 1",
            [user],
        ).fetchone()
    return str(row[0]) if row else None


@dg.asset_check(
    asset=mailbox_archive,
    description=f"Warns when over {FAILURE_RATE_WARNING:.0%} of the last run's items failed.",
)
def mailbox_failures_below_threshold(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    return _failure_rate_result(lake, _mailbox_id(lake, _partition_key(context)))


@dg.asset_check(
    asset=drive_archive,
    description=f"Warns when over {FAILURE_RATE_WARNING:.0%} of the last run's items failed.",
)
def drive_failures_below_threshold(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    return _failure_rate_result(lake, _partition_key(context))


def _integrity_result(lake: LakeResource) -> dg.AssetCheckResult:
    try:
        counts = verify_archive(lake.open(), blob_sample=BLOB_SAMPLE)
    except LakeIntegrityError as error:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{len(error.problems)} problem(s); run `m365lake verify` for the list",
            metadata={
                "problems": dg.MetadataValue.md(
                    "\n".join(f"- {p}" for p in error.problems[:_ROWS_SHOWN])
                )
            },
        )
    return dg.AssetCheckResult(
        passed=True, metadata={name: int(value) for name, value in counts.items()}
    )


@dg.asset_check(
    asset=retention_plan,
    # Blocking: a purge must not run on a lake that fails verification, because it could
    # remove the rows or blobs an investigation of the damage needs.
    blocking=True,
    description=(
        f"Manifest chain, committed file hashes, audit chain and {BLOB_SAMPLE} random blobs "
        "of the whole lake; a failure stops the purge."
    ),
)
def lake_integrity(lake: LakeResource) -> dg.AssetCheckResult:
    return _integrity_result(lake)


BACKUP_CHECKS = [
    mailbox_count_matches_source,
    drive_count_matches_source,
    mailbox_failures_below_threshold,
    drive_failures_below_threshold,
    lake_integrity,
]

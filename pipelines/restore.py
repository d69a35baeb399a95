"""Restore in Dagster: a job whose launchpad config names the selection, target and policy.

The default config is a dry run, so launching the job without editing it only plans.
Each run, dry or not, is in the audit trail. The run fails when an item failed, or when
verification found a difference that Graph does not explain.
"""

import asyncio

import dagster as dg
from pydantic import Field

from m365lake.errors import RestoreError
from m365lake.restore.model import ConflictPolicy, RestoreTarget, default_restore_folder
from m365lake.restore.runner import RestoreRun, restore
from m365lake.restore.selection import Selection, parse_point_in_time
from pipelines.assets import GRAPH_POOL
from pipelines.resources import GraphResource, LakeResource

_LINES_SHOWN = 50


class RestoreConfig(dg.Config):
    """Launchpad config of a restore: selection, target and conflict policy."""

    kql: str | None = Field(default=None, description="Restore the items this KQL search matches.")
    item_ids: list[str] = Field(default=[], description="Archived message or drive item ids.")
    custodian: str | None = Field(
        default=None, description="User principal name or id: their mailbox and OneDrive."
    )
    folder: str | None = Field(
        default=None, description="Mail folder path, subfolders included, e.g. Inbox/Projects."
    )
    path: str | None = Field(default=None, description="Drive path prefix, e.g. /Documents.")
    drive_id: str | None = Field(default=None, description="Only this drive.")
    as_of: str | None = Field(
        default=None,
        description="Restore the state at this ISO 8601 time with zone, e.g. "
        "2026-11-30T17:00:00Z. Empty: the newest archived versions.",
    )
    to_mailbox: str | None = Field(default=None, description="Restore mail into this mailbox.")
    to_drive: str | None = Field(default=None, description="Restore files into this drive id.")
    restore_folder: str | None = Field(
        default=None,
        description="Put everything under this new top-level folder; 'default' names it "
        "'Restored <date> <time> UTC'.",
    )
    conflict: str = Field(
        default=ConflictPolicy.SKIP.value,
        description="Live item of the same name in the way: skip, rename or replace.",
    )
    workloads: list[str] = Field(
        default=[],
        description="Restore only these workloads (mail, files, calendar, contacts, teams). "
        "Empty: mail and files; calendar and contacts only when named.",
    )
    dry_run: bool = Field(default=True, description="Only plan; set false to write to the tenant.")
    verify: bool = Field(default=True, description="Read restored items back and compare them.")


def _markdown(run: RestoreRun) -> str:
    lines = ["| workload | outcome | source | target | reason |", "|---|---|---|---|---|"]
    for result in run.report.items[:_LINES_SHOWN]:
        cells = (
            result.planned.workload,
            result.outcome.value,
            result.planned.source_path,
            result.planned.target_path,
            result.reason or result.planned.reason or "",
        )
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    hidden = len(run.report.items) - _LINES_SHOWN
    if hidden > 0:
        lines.append(f'\n{hidden} more lines: `m365lake sql "SELECT * FROM restore_ledger"`')
    return "\n".join(lines)


@dg.op(
    description="Plan, or with dry_run false carry out and verify, a restore to the tenant.",
    pool=GRAPH_POOL,
)
def restore_op(
    context: dg.OpExecutionContext, config: RestoreConfig, lake: LakeResource, graph: GraphResource
) -> dg.Output[None]:
    selection = Selection(
        kql=config.kql,
        item_ids=tuple(config.item_ids),
        custodian=config.custodian,
        folder=config.folder,
        path=config.path,
        drive_id=config.drive_id,
        as_of=parse_point_in_time(config.as_of) if config.as_of else None,
        workloads=tuple(config.workloads),
    )
    try:
        policy = ConflictPolicy(config.conflict)
    except ValueError:
        raise RestoreError(
            f"invalid conflict policy {config.conflict!r}: use skip, rename or replace"
        ) from None
    folder = config.restore_folder
    target = RestoreTarget(
        mailbox_id=config.to_mailbox,
        drive_id=config.to_drive,
        restore_folder=default_restore_folder() if folder == "default" else folder,
    )
    launched_by = context.run.tags.get("dagster/user") or "dagster"
    result = asyncio.run(
        restore(
            lake.open(),
            graph.settings(),
            selection,
            target=target,
            policy=policy,
            dry_run=config.dry_run,
            verify=config.verify,
            actor=f"{launched_by} (dagster run {context.run_id})",
        )
    )
    metadata: dict[str, dg.RawMetadataValue] = {
        "restore_id": result.report.restore_id,
        "dry_run": result.report.dry_run,
        "audit_seq": result.audit_seq,
        "plan": dg.MetadataValue.md(_markdown(result)),
        **result.report.counts(),
        "verify_problems": len(result.problems),
    }
    if not result.succeeded:
        raise dg.Failure(
            description=(
                f"restore {result.report.restore_id}: {result.report.counts()['failed']} items "
                f"failed and verification found {len(result.problems)} differences; see the "
                "plan metadata and the restore_ledger table"
            ),
            metadata=metadata,
        )
    return dg.Output(None, metadata=metadata)


@dg.job(
    description=(
        "Restore archived mail and files to the tenant. Edit the launchpad config: choose a "
        "selection, a target and a conflict policy; dry_run true (the default) only plans."
    ),
    tags={"m365lake/kind": "restore"},
)
def restore_job() -> None:
    restore_op()

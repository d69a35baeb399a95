"""Run a restore from selection to report: plan, optionally execute and verify, then audit.

The workload modules (``m365lake.restore.mail`` and ``m365lake.restore.files``) do the
Graph work. This module only connects them, so the command line and the Dagster job
behave the same. A dry run, the default, talks to the tenant only to find collisions
and creates nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

from m365lake.config import GraphSettings
from m365lake.discovery import audit
from m365lake.discovery.commit_loop import new_run_id
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.lake.blob_users import blob_user_async
from m365lake.restore.calendar import (
    plan_calendar_restore,
    run_calendar_restore,
    select_events,
    verify_calendar_restore,
)
from m365lake.restore.contacts import (
    plan_contacts_restore,
    run_contacts_restore,
    select_contacts,
    verify_contacts_restore,
)
from m365lake.restore.files import plan_files_restore, run_files_restore, verify_files_restore
from m365lake.restore.ledger import RestoreLedger
from m365lake.restore.mail import plan_mail_restore, run_mail_restore, verify_mail_restore
from m365lake.restore.model import (
    ConflictPolicy,
    ItemResult,
    PlannedItem,
    RestoreReport,
    RestoreTarget,
    Severity,
    VerifyFinding,
    planned_outcome,
)
from m365lake.restore.selection import Selection, require_some, select_files, select_messages
from m365lake.restore.teams import (
    plan_teams_restore,
    run_teams_restore,
    select_channel_messages,
    verify_teams_restore,
)

logger = logging.getLogger(__name__)


class _Planner(Protocol):
    def __call__(
        self,
        lake: Lake,
        graph: GraphClient,
        rows: Sequence[dict[str, Any]],
        target: RestoreTarget,
        policy: ConflictPolicy,
        ledger: RestoreLedger,
        *,
        as_of: datetime | None = None,
    ) -> Awaitable[list[PlannedItem]]: ...


class _Executor(Protocol):
    def __call__(
        self,
        lake: Lake,
        graph: GraphClient,
        plan: list[PlannedItem],
        *,
        restore_id: str,
        policy: ConflictPolicy,
        ledger: RestoreLedger,
    ) -> Awaitable[list[ItemResult]]: ...


_Verifier = Callable[[Lake, GraphClient, list[ItemResult]], Awaitable[list[VerifyFinding]]]


@dataclass(frozen=True)
class WorkloadFunctions:
    """The plan, run and verify functions of one workload (``mail`` or ``files``)."""

    name: str
    plan: _Planner
    run: _Executor
    verify: _Verifier


def workload_functions(name: str, selection: Selection | None = None) -> WorkloadFunctions:
    """Return the restore functions of ``mail``, ``files``, ``contacts``, ``calendar`` or ``teams``.

    A selection by mail folder recreates the whole archived folder tree below it, empty
    folders included, which the message rows alone do not show.
    """
    if name == "mail":
        scope = selection.folder if selection is not None else None
        plan = cast(_Planner, functools.partial(plan_mail_restore, folder_scope=scope))
        return WorkloadFunctions("mail", plan, run_mail_restore, verify_mail_restore)
    if name == "files":
        return WorkloadFunctions(
            "files", plan_files_restore, run_files_restore, verify_files_restore
        )
    if name == "calendar":
        return WorkloadFunctions(
            "calendar", plan_calendar_restore, run_calendar_restore, verify_calendar_restore
        )
    if name == "contacts":
        return WorkloadFunctions(
            "contacts", plan_contacts_restore, run_contacts_restore, verify_contacts_restore
        )
    if name == "teams":
        return WorkloadFunctions(
            "teams", plan_teams_restore, run_teams_restore, verify_teams_restore
        )
    raise ValueError(
        f"unknown restore workload {name!r}; expected mail, files, calendar, contacts or teams"
    )


@dataclass
class RestoreRun:
    """Record of one restore: its plan or results, verification findings and audit event."""

    report: RestoreReport
    selection: Selection
    target: RestoreTarget
    findings: list[VerifyFinding] = field(default_factory=list)
    audit_seq: int | None = None

    @property
    def problems(self) -> list[VerifyFinding]:
        """Return the findings that are not a tolerated Graph rewrite."""
        return [finding for finding in self.findings if finding.severity is not Severity.REWRITE]

    @property
    def succeeded(self) -> bool:
        counts = self.report.counts()
        return counts["failed"] == 0 and not self.problems


def _parameters(selection: Selection, target: RestoreTarget, run: RestoreRun) -> dict[str, Any]:
    return {
        "restore_id": run.report.restore_id,
        "dry_run": run.report.dry_run,
        "policy": run.report.policy.value,
        "kql": selection.kql,
        "item_ids": list(selection.item_ids),
        "custodian": selection.custodian,
        "folder": selection.folder,
        "path": selection.path,
        "drive_id": selection.drive_id,
        "as_of": selection.as_of,
        "target_mailbox": target.mailbox_id,
        "target_drive": target.drive_id,
        "restore_folder": target.restore_folder,
        "workloads": list(selection.workloads),
    }


async def restore(
    lake: Lake,
    settings: GraphSettings,
    selection: Selection,
    *,
    target: RestoreTarget | None = None,
    policy: ConflictPolicy = ConflictPolicy.SKIP,
    dry_run: bool = True,
    verify: bool = True,
    actor: str,
    graph: GraphClient | None = None,
    workloads: Sequence[WorkloadFunctions] | None = None,
) -> RestoreRun:
    """Plan the restore of ``selection`` and, unless ``dry_run``, carry it out and verify it.

    Raises SelectionError when nothing matches. Every run, dry or not, is appended to the
    audit trail with its parameters and counts per outcome. ``graph`` and ``workloads``
    replace the client opened from ``settings`` and the mail and files modules, for tests.
    """
    chosen_target = target or RestoreTarget()
    messages = select_messages(lake, selection)
    files = select_files(lake, selection)
    contacts = select_contacts(lake, selection)
    events = select_events(lake, selection)
    # Teams messages cannot be restored, but a selection that picks them gets a plan
    # line per message saying so, rather than a silent skip.
    channel_messages = select_channel_messages(lake, selection)
    if not contacts and not channel_messages and not events:
        require_some(messages, files, selection)
    chosen = list(workloads) if workloads is not None else []
    if workloads is None:
        chosen += [workload_functions("mail", selection)] if messages else []
        chosen += [workload_functions("files", selection)] if files else []
        chosen += [workload_functions("contacts", selection)] if contacts else []
        chosen += [workload_functions("calendar", selection)] if events else []
        chosen += [workload_functions("teams", selection)] if channel_messages else []
    rows_of = {
        "mail": messages,
        "files": files,
        "contacts": contacts,
        "teams": channel_messages,
        "calendar": events,
    }

    restore_id = new_run_id("restore")
    report = RestoreReport(restore_id, dry_run=dry_run, policy=policy)
    run = RestoreRun(report, selection, chosen_target)
    ledger = RestoreLedger.load(lake)
    client = graph or GraphClient(settings)
    try:
        # A restore reads archived blobs until it ends. As a blob user it makes a purge
        # wait, or defer those deletions, until then.
        async with blob_user_async(lake.storage, owner=f"restore {restore_id}"):
            await _carry_out(lake, client, run, chosen, rows_of, ledger, verify=verify)
    except BaseException as error:
        # Items created before the failure are in the tenant and the ledger, so the trail
        # must show this restore even though it did not finish.
        _audit(lake, actor, run, error=f"{type(error).__name__}: {error}")
        raise
    finally:
        if graph is None:
            await client.aclose()
    _audit(lake, actor, run)
    return run


async def _carry_out(
    lake: Lake,
    client: GraphClient,
    run: RestoreRun,
    chosen: Sequence[WorkloadFunctions],
    rows_of: dict[str, list[dict[str, Any]]],
    ledger: RestoreLedger,
    *,
    verify: bool,
) -> None:
    report = run.report
    restore_id = report.restore_id
    policy = report.policy
    dry_run = report.dry_run
    for workload in chosen:
        rows = rows_of.get(workload.name, [])
        if not rows:
            continue
        plan = await workload.plan(
            lake, client, rows, run.target, policy, ledger, as_of=run.selection.as_of
        )
        logger.info("restore %s: %d %s items planned", restore_id, len(plan), workload.name)
        if dry_run:
            report.items += [ItemResult(item, planned_outcome(item, policy)) for item in plan]
            continue
        results = await workload.run(
            lake, client, plan, restore_id=restore_id, policy=policy, ledger=ledger
        )
        report.items += results
        if verify:
            run.findings += await workload.verify(lake, client, results)


def _audit(lake: Lake, actor: str, run: RestoreRun, *, error: str | None = None) -> None:
    counts = run.report.counts()
    counts["verify_problems"] = len(run.problems)
    counts["verify_rewrites"] = len(run.findings) - len(run.problems)
    parameters = _parameters(run.selection, run.target, run)
    if error is not None:
        parameters["error"] = error
    event = audit.record_event(
        lake, actor, "restore.plan" if run.report.dry_run else "restore", parameters, counts
    )
    run.audit_seq = event.seq

"""The ``m365lake restore`` command: plan by default, ``--execute`` to write to the tenant."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from m365lake.config import GraphSettings
from m365lake.discovery.cli_common import (
    actor_option,
    lake_option,
    open_lake,
    reported_errors,
    resolve_actor,
)
from m365lake.errors import KqlSyntaxError, M365LakeError
from m365lake.query_output import format_table, json_value
from m365lake.restore.model import (
    ConflictPolicy,
    Outcome,
    RestoreTarget,
    check_folder_name,
    default_restore_folder,
)
from m365lake.restore.runner import RestoreRun, restore
from m365lake.restore.selection import (
    Selection,
    SelectionError,
    check_selection,
    parse_point_in_time,
)

_REASONS_SHOWN = 5
PLAN_COLUMNS = ("workload", "outcome", "source", "target", "reason")
_DRY_RUN_OUTCOMES = {
    Outcome.CREATED: "would create",
    Outcome.REPLACED: "would replace",
    Outcome.RENAMED: "would rename",
    Outcome.SKIPPED: "would skip",
}
"""The wording a dry run's table uses for the outcomes that describe a write."""


def shown_outcome(outcome: Outcome, *, dry_run: bool) -> str:
    """Return the outcome as the table prints it: in a dry run, what would happen."""
    return _DRY_RUN_OUTCOMES.get(outcome, outcome.value) if dry_run else outcome.value


def register(main: click.Group) -> None:
    """Add the ``restore`` command to ``main``."""
    main.add_command(restore_command)


def _parse_time(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_point_in_time(value)
    except SelectionError as error:
        raise click.BadParameter(str(error)) from None


def _check_folder(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None or value == "":
        return value
    try:
        return check_folder_name(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command("restore")
@click.option("--kql", default=None, help="Restore the items this compliance search matches.")
@click.option(
    "--id",
    "item_ids",
    multiple=True,
    help="Archived message, drive item, event or contact id (repeatable). Events and "
    "contacts need --workload calendar or --workload contacts.",
)
@click.option(
    "--custodian", default=None, help="User principal name or id: their mailbox and OneDrive."
)
@click.option(
    "--folder", default=None, help="Mail folder path, subfolders included, e.g. 'Inbox/Projects'."
)
@click.option("--path", default=None, help="Drive path prefix, e.g. '/Documents/Reports'.")
@click.option(
    "--workload",
    "workloads",
    multiple=True,
    type=click.Choice(["mail", "files", "calendar", "contacts", "teams"]),
    help="Restore only this workload (repeatable). Default: mail and files; calendar "
    "events (whole series) and contacts are "
    "restored only when named, with --folder matching contact folders such as "
    "'Contacts/Clients'. Teams messages are listed as unrestorable, with the export to "
    "use instead.",
)
@click.option(
    "--drive", "drive_id", default=None, help="Only this drive id (a OneDrive or a library)."
)
@click.option(
    "--as-of",
    callback=_parse_time,
    default=None,
    help="Restore the state at this time (ISO 8601 with zone), deleted-since items included. "
    "Default: the newest archived versions.",
)
@click.option(
    "--to-mailbox", default=None, help="Restore mail into this mailbox instead (UPN or id)."
)
@click.option("--to-drive", default=None, help="Restore files into this drive id instead.")
@click.option(
    "--restore-folder",
    callback=_check_folder,
    default=None,
    is_flag=False,
    flag_value="",
    help="Put everything under a new top-level folder; without a name, "
    "'Restored <date> <time> UTC'.",
)
@click.option(
    "--conflict",
    type=click.Choice([policy.value for policy in ConflictPolicy]),
    default=ConflictPolicy.SKIP.value,
    show_default=True,
    help="When a live item of the same name is in the way: skip it, restore beside it "
    "(rename), or replace it.",
)
@click.option(
    "--execute", is_flag=True, help="Write to the tenant. Without it, only the plan is shown."
)
@click.option("--no-verify", is_flag=True, help="Do not read restored items back to compare them.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output: a table of the first --limit lines and the totals, or the whole report as JSON.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Table lines to print.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the whole report as JSON to this file.",
)
@actor_option
@lake_option
def restore_command(
    kql: str | None,
    item_ids: tuple[str, ...],
    custodian: str | None,
    folder: str | None,
    path: str | None,
    workloads: tuple[str, ...],
    drive_id: str | None,
    as_of: datetime | None,
    to_mailbox: str | None,
    to_drive: str | None,
    restore_folder: str | None,
    conflict: str,
    execute: bool,
    no_verify: bool,
    output_format: str,
    limit: int,
    report_path: Path | None,
    actor: str | None,
    lake_location: str | None,
) -> None:
    """Plan or carry out a restore of archived mail, files, calendar events and contacts.

    Without --execute nothing is written: the plan lists what would be created where,
    the collisions with live items and what cannot be restored. Run it again with
    --execute to restore. A restore never overwrites a live item unless --conflict replace
    is given, and running it twice creates nothing the second time.

    Mail and files are searched by default; calendar events (a series as a whole) and
    contacts only with --workload calendar or --workload contacts. Teams messages cannot
    be written back: they are listed with the export to use instead. Writing needs the
    write permissions (Mail.ReadWrite, Files.ReadWrite.All, Calendars.ReadWrite,
    Contacts.ReadWrite).
    """
    actor_name = resolve_actor(actor)
    lake = open_lake(lake_location, write=True)
    target = RestoreTarget(
        mailbox_id=to_mailbox,
        drive_id=to_drive,
        restore_folder=default_restore_folder() if restore_folder == "" else restore_folder,
    )
    with reported_errors(lake):
        selection = Selection(
            kql=kql,
            item_ids=item_ids,
            custodian=custodian,
            folder=folder,
            path=path,
            drive_id=drive_id,
            as_of=as_of,
            workloads=workloads,
        )
        check_selection(selection)
        try:
            settings = GraphSettings.from_env()
        except M365LakeError as error:
            raise click.ClickException(str(error)) from error
        try:
            run = asyncio.run(
                restore(
                    lake,
                    settings,
                    selection,
                    target=target,
                    policy=ConflictPolicy(conflict),
                    dry_run=not execute,
                    verify=not no_verify,
                    actor=actor_name,
                )
            )
        except KqlSyntaxError as error:
            raise click.ClickException(f"invalid KQL in --kql: {error}") from error
    document = report_document(run)
    if report_path is not None:
        report_path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    if output_format == "json":
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        _echo_table(run, limit)
    if not run.succeeded:
        sys.exit(1)


def report_document(run: RestoreRun) -> dict[str, Any]:
    """Return the restore report as a JSON-ready dictionary."""
    report = run.report
    return {
        "restore_id": report.restore_id,
        "dry_run": report.dry_run,
        "policy": report.policy.value,
        "audit_seq": run.audit_seq,
        "counts": report.counts(),
        "items": [
            json_value(
                {
                    **asdict(result.planned),
                    "outcome": result.outcome.value,
                    "target_item_id": result.target_item_id,
                    "result_reason": result.reason,
                }
            )
            for result in report.items
        ],
        "verification": [
            {**asdict(finding), "severity": finding.severity.value} for finding in run.findings
        ],
    }


def _echo_table(run: RestoreRun, limit: int) -> None:
    report = run.report
    rows = [
        (
            result.planned.workload,
            shown_outcome(result.outcome, dry_run=report.dry_run),
            result.planned.source_path,
            result.planned.target_path,
            result.reason or result.planned.reason or "",
        )
        for result in report.items
    ]
    if rows and limit:
        for line in format_table(PLAN_COLUMNS, rows[:limit])[:-1]:
            click.echo(line)
        if len(rows) > limit:
            click.echo(f"… {len(rows) - limit} more lines; use --format json or --report FILE")

    # Table cells are cut short, and one cause (a missing permission) often fails every
    # item, so each distinct failure reason is printed once in full.
    reasons = Counter(
        result.reason or "no reason recorded"
        for result in report.items
        if result.outcome is Outcome.FAILED
    )
    for reason, count in reasons.most_common(_REASONS_SHOWN):
        click.echo(f"failed ({count} items): {reason}", err=True)

    counts = ", ".join(
        f"{count} {shown_outcome(Outcome(name), dry_run=report.dry_run)}"
        for name, count in report.counts().items()
        if count
    )
    verb = "planned" if report.dry_run else "restored"
    click.echo(f"restore {report.restore_id} {verb}: {counts or 'nothing'}")

    for finding in run.problems:
        click.echo(
            f"verify {finding.severity.value}: {finding.workload} {finding.source_item_id} "
            f"{finding.field} expected {finding.expected!r}, found {finding.actual!r}",
            err=True,
        )
    rewrites = len(run.findings) - len(run.problems)
    if rewrites:
        click.echo(f"verify: {rewrites} known server-side rewrites (see --report)", err=True)
    if report.dry_run and report.items:
        click.echo("dry run: nothing was written. Add --execute to restore.")

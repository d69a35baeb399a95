"""The ``m365lake case``, ``hold``, ``audit``, ``retention``, ``immutability``, ``verify``
and ``export`` commands.

``register(main)`` adds them to the m365lake command group.
"""

from __future__ import annotations

import click

from m365lake.discovery import cases
from m365lake.discovery.case_state import load_case
from m365lake.discovery.cli_audit import audit_command, hold, verify_command
from m365lake.discovery.cli_common import (
    actor_option,
    echo_rows,
    format_option,
    lake_option,
    open_lake,
    reported_errors,
    resolve_actor,
)
from m365lake.discovery.production.cli import export_command
from m365lake.retention.cli import retention
from m365lake.retention.immutability_cli import immutability


def register(main: click.Group) -> None:
    """Add the ``case``, ``hold``, ``audit``, ``retention``, ``immutability``, ``verify`` and
    ``export`` commands.

    The ``verify`` added here replaces one already registered: it runs the same checks,
    prints the same lines, and adds the audit chain and blob reference checks,
    ``--sample``/``--seed`` and ``--audit-head``.
    """
    main.add_command(case)
    main.add_command(hold)
    main.add_command(audit_command)
    main.add_command(verify_command)
    main.add_command(retention)
    main.add_command(immutability)
    main.add_command(export_command)


@click.group()
def case() -> None:
    """Manage e-discovery cases: custodians and saved searches."""


@case.command("create")
@click.argument("name")
@click.option(
    "--id", "case_id", default=None, help="Case id, e.g. CASE-2024-017. Default: c-<random>."
)
@click.option("--description", default=None, help="What the matter is about.")
@actor_option
@lake_option
def case_create(
    name: str,
    case_id: str | None,
    description: str | None,
    actor: str | None,
    lake_location: str | None,
) -> None:
    """Create an open case called NAME and print its id."""
    lake = open_lake(lake_location, write=True)
    with reported_errors(lake):
        created = cases.create_case(
            lake, name, actor=resolve_actor(actor), case_id=case_id, description=description
        )
    click.echo(created.case_id)


@case.command("list")
@click.option("--open-only", is_flag=True, help="Leave out closed cases.")
@format_option
@lake_option
def case_list(open_only: bool, output_format: str, lake_location: str | None) -> None:
    """List the cases with their status."""
    lake = open_lake(lake_location, write=False)
    with reported_errors(lake):
        found = cases.list_cases(lake, include_closed=not open_only)
    columns = ["case_id", "name", "status", "created_at", "created_by", "closed_at"]
    rows = [
        (item.case_id, item.name, item.status, item.created_at, item.created_by, item.closed_at)
        for item in found
    ]
    echo_rows(columns, rows, output_format)


@case.command("show")
@click.argument("case_id")
@format_option
@lake_option
def case_show(case_id: str, output_format: str, lake_location: str | None) -> None:
    """Show a case: its custodians, saved searches and holds."""
    lake = open_lake(lake_location, write=False)
    with reported_errors(lake):
        details = load_case(lake, case_id)
    item = details.case
    if output_format == "table":
        click.echo(f"case {item.case_id}: {item.name} ({item.status}, revision {item.revision})")
        if item.description:
            click.echo(item.description)
        click.echo("")
    rows = [
        ("custodian", custodian.custodian_id, custodian.label, "active")
        for custodian in details.custodians.values()
    ]
    rows += [
        ("search", search.search_id, f"{search.name}: {search.kql}", "saved")
        for search in details.searches.values()
    ]
    rows += [
        ("hold", hold_item.hold_id, hold_item.kql or hold_item.kind, hold_item.status)
        for hold_item in details.holds.values()
    ]
    echo_rows(["part", "id", "description", "status"], rows, output_format)


@case.command("close")
@click.argument("case_id")
@click.option("--reason", default=None, help="Why the case is closed.")
@actor_option
@lake_option
def case_close(
    case_id: str, reason: str | None, actor: str | None, lake_location: str | None
) -> None:
    """Close a case; its holds must be released first."""
    lake = open_lake(lake_location, write=True)
    with reported_errors(lake):
        cases.close_case(lake, case_id, actor=resolve_actor(actor), reason=reason)
    click.echo(f"case {case_id} closed")


@case.command("add-custodian")
@click.argument("case_id")
@click.option("--mailbox", "mailboxes", multiple=True, help="Mailbox id or user principal name.")
@click.option(
    "--onedrive", "onedrives", multiple=True, help="Drive id or the owner's user principal name."
)
@click.option("--site", "sites", multiple=True, help="SharePoint site id or URL.")
@click.option("--team", "teams", multiple=True, help="Teams team id or display name.")
@actor_option
@lake_option
def case_add_custodian(
    case_id: str,
    mailboxes: tuple[str, ...],
    onedrives: tuple[str, ...],
    sites: tuple[str, ...],
    teams: tuple[str, ...],
    actor: str | None,
    lake_location: str | None,
) -> None:
    """Add custodians to a case (each option repeatable); they must be in the lake."""
    references = [("mailbox", value) for value in mailboxes]
    references += [("onedrive", value) for value in onedrives]
    references += [("site", value) for value in sites]
    references += [("team", value) for value in teams]
    if not references:
        raise click.UsageError(
            "name at least one custodian with --mailbox, --onedrive, --site or --team"
        )
    lake = open_lake(lake_location, write=True)
    with reported_errors(lake):
        added = cases.add_custodians(lake, case_id, references, actor=resolve_actor(actor))
    for custodian in added:
        click.echo(f"added {custodian.custodian_id} ({custodian.label})")
    skipped = len(references) - len(added)
    if skipped:
        click.echo(f"{skipped} custodian(s) were already on the case", err=True)


@case.command("remove-custodian")
@click.argument("case_id")
@click.argument("custodian_id")
@actor_option
@lake_option
def case_remove_custodian(
    case_id: str, custodian_id: str, actor: str | None, lake_location: str | None
) -> None:
    """Remove CUSTODIAN_ID (as `case show` prints it) from a case."""
    lake = open_lake(lake_location, write=True)
    with reported_errors(lake):
        cases.remove_custodian(lake, case_id, custodian_id, actor=resolve_actor(actor))
    click.echo(f"removed {custodian_id} from case {case_id}")


@case.command("save-search")
@click.argument("case_id")
@click.argument("name")
@click.argument("kql")
@actor_option
@lake_option
def case_save_search(
    case_id: str, name: str, kql: str, actor: str | None, lake_location: str | None
) -> None:
    """Save the KQL query KQL under NAME with a case and print the search id."""
    lake = open_lake(lake_location, write=True)
    with reported_errors(lake):
        saved = cases.save_search(lake, case_id, name, kql, actor=resolve_actor(actor))
    click.echo(saved.search_id)
    if not saved.validated:
        click.echo("the query was saved without validation: no KQL parser is installed", err=True)


@case.command("delete-search")
@click.argument("case_id")
@click.argument("search_id")
@actor_option
@lake_option
def case_delete_search(
    case_id: str, search_id: str, actor: str | None, lake_location: str | None
) -> None:
    """Delete a saved search from a case."""
    lake = open_lake(lake_location, write=True)
    with reported_errors(lake):
        cases.delete_search(lake, case_id, search_id, actor=resolve_actor(actor))
    click.echo(f"deleted search {search_id} of case {case_id}")

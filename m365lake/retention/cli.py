"""The ``m365lake retention`` commands: policies and the purge."""

from __future__ import annotations

import click

from m365lake.discovery.cli_common import (
    actor_option,
    echo_rows,
    format_option,
    lake_option,
    open_lake,
    reported_errors,
    resolve_actor,
)
from m365lake.retention.policies import WORKLOADS, add_policy, list_policies, remove_policy
from m365lake.retention.purging import purge


@click.group()
def retention() -> None:
    """Manage retention policies and purge expired versions."""


@retention.command("add-policy")
@click.argument("name")
@click.option("--workload", type=click.Choice(WORKLOADS), required=True)
@click.option(
    "--action",
    type=click.Choice(["delete", "keep"]),
    required=True,
    help="delete: versions older than --days may be purged; keep: younger ones may not.",
)
@click.option("--days", type=click.IntRange(min=0), required=True, help="Age limit in days.")
@click.option(
    "--age-from",
    "basis",
    type=click.Choice(["item-date", "deletion"]),
    default="item-date",
    show_default=True,
    help="Measure age from the item's date (mail: received; files and contacts: "
    "modified; calendar: event end; teams: message created), or from the time the tenant "
    "deleted the item.",
)
@click.option("--mailbox", "mailboxes", multiple=True, help="Limit to this mailbox (repeatable).")
@click.option("--onedrive", "onedrives", multiple=True, help="Limit to this OneDrive (repeatable).")
@click.option("--site", "sites", multiple=True, help="Limit to this site's libraries (repeatable).")
@click.option("--team", "teams", multiple=True, help="Limit to this team's channels (repeatable).")
@actor_option
@lake_option
def retention_add_policy(
    name: str,
    workload: str,
    action: str,
    days: int,
    basis: str,
    mailboxes: tuple[str, ...],
    onedrives: tuple[str, ...],
    sites: tuple[str, ...],
    teams: tuple[str, ...],
    actor: str | None,
    lake_location: str | None,
) -> None:
    """Add a retention policy called NAME and print its id. Default scope: all locations."""
    locations = [("mailbox", value) for value in mailboxes]
    locations += [("onedrive", value) for value in onedrives]
    locations += [("site", value) for value in sites]
    locations += [("team", value) for value in teams]
    lake = open_lake(lake_location, write=True)
    with reported_errors(lake):
        policy = add_policy(
            lake,
            actor=resolve_actor(actor),
            name=name,
            workload=workload,
            action=action,
            days=days,
            basis="deleted" if basis == "deletion" else "item_date",
            locations=locations or None,
        )
    click.echo(policy.policy_id)


@retention.command("remove-policy")
@click.argument("policy_id")
@click.option("--reason", required=True, help="Why the policy no longer applies (recorded).")
@actor_option
@lake_option
def retention_remove_policy(
    policy_id: str, reason: str, actor: str | None, lake_location: str | None
) -> None:
    """Remove a retention policy."""
    lake = open_lake(lake_location, write=True)
    with reported_errors(lake):
        remove_policy(lake, policy_id, actor=resolve_actor(actor), reason=reason)
    click.echo(f"policy {policy_id} removed")


@retention.command("policies")
@format_option
@lake_option
def retention_policies(output_format: str, lake_location: str | None) -> None:
    """List the retention policies."""
    lake = open_lake(lake_location, write=False)
    with reported_errors(lake):
        policies = list_policies(lake)
    columns = ["policy_id", "name", "workload", "action", "days", "basis", "locations"]
    rows = [
        (
            policy.policy_id,
            policy.name,
            policy.workload,
            policy.action,
            policy.days,
            policy.basis,
            list(policy.locations) if policy.locations is not None else "all locations",
        )
        for policy in policies
    ]
    echo_rows(columns, rows, output_format)


@retention.command("purge")
@click.option(
    "--apply",
    is_flag=True,
    help="Remove the versions. Without it the purge is a dry run that only lists them.",
)
@click.option("--list", "list_versions", is_flag=True, help="List every version to be purged.")
@format_option
@actor_option
@lake_option
def retention_purge(
    apply: bool,
    list_versions: bool,
    output_format: str,
    actor: str | None,
    lake_location: str | None,
) -> None:
    """Purge versions that a delete policy expired and no keep policy or hold protects."""
    lake = open_lake(lake_location, write=apply)
    with reported_errors(lake):
        result = purge(lake, actor=resolve_actor(actor), apply=apply)
    plan = result.plan
    if list_versions or output_format == "json":
        columns = ["table", "container_id", "item_id", "captured_at", "tombstone", "policies"]
        rows = [
            (
                stored.table,
                stored.version.container_id,
                stored.version.item_id,
                stored.version.captured_at,
                stored.tombstone,
                plan.reasons.get(stored, []),
            )
            for stored in plan.purge
        ]
        echo_rows(columns, rows, output_format)
    counts = result.counts()
    verb = "purged" if apply else "would purge (dry run; --apply removes them)"
    click.echo(
        f"{verb}: {counts['versions']} versions ({counts['bytes']:,} bytes), "
        f"{counts['attachment_rows']} attachment rows, {counts['part_rows']} event "
        f"attachment and message part rows; kept {counts['held']} held and "
        f"{counts['protected']} protected by keep policies"
        + (
            f", and {counts['series_kept']} whose calendar series stays"
            if counts["series_kept"]
            else ""
        ),
        err=True,
    )
    if apply:
        click.echo(
            f"replaced {counts['files_replaced']} files; deleted {counts['files_deleted']} "
            f"files and {counts['blobs_deleted']} blobs",
            err=True,
        )
    if result.blobs_deferred:
        click.echo(f"blobs left for the next purge: {result.blobs_deferred}", err=True)
    if result.locked:
        click.echo(
            f"{len(result.locked)} removed files and blobs are kept by S3 Object Lock for now:",
            err=True,
        )
        for error in result.locked:
            click.echo(f"  {error}", err=True)

"""The ``m365lake immutability`` commands: S3 Object Lock settings and legal holds."""

from __future__ import annotations

import click

from m365lake.discovery.cli_common import (
    actor_option,
    lake_option,
    open_lake,
    reported_errors,
    resolve_actor,
)
from m365lake.retention.immutability import (
    MAX_LOCK_DAYS,
    object_lock_settings,
    set_object_lock,
    sync_legal_holds,
)


@click.group()
def immutability() -> None:
    """Lock a lake's objects on S3 against deletes and overwrites (S3 Object Lock)."""


@immutability.command("set")
@click.option(
    "--mode",
    type=click.Choice(["governance", "compliance"]),
    required=True,
    help="governance: users with s3:BypassGovernanceRetention may still delete; "
    "compliance: nobody may delete or shorten the lock before its date.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1, max=MAX_LOCK_DAYS),
    required=True,
    help="Days each new table file, blob and manifest stays locked; a longer keep "
    "policy lengthens it.",
)
@actor_option
@lake_option
def immutability_set(mode: str, days: int, actor: str | None, lake_location: str | None) -> None:
    """Lock every object the lake writes from now on for DAYS days in MODE."""
    lake = open_lake(lake_location, write=True)
    with reported_errors(lake):
        rule = set_object_lock(lake, actor=resolve_actor(actor), mode=mode, days=days)
    click.echo(f"new objects are locked in {rule.mode.lower()} mode for {rule.days} days")


@immutability.command("show")
@lake_option
def immutability_show(lake_location: str | None) -> None:
    """Print the Object Lock settings and the lock period in force."""
    lake = open_lake(lake_location, write=False)
    with reported_errors(lake):
        settings, rule = object_lock_settings(lake)
    if settings is None or rule is None:
        click.echo(f"Object Lock is off for the lake at {lake.location}")
        return
    click.echo(f"mode: {rule.mode.lower()}")
    click.echo(f"days set: {settings['days']}")
    click.echo(f"days in force (with keep policies): {rule.days}")


@immutability.command("sync")
@actor_option
@lake_option
def immutability_sync(actor: str | None, lake_location: str | None) -> None:
    """Set S3 legal holds to match the active holds; hold changes and purges do it too."""
    lake = open_lake(lake_location, write=True)
    with reported_errors(lake):
        changes = sync_legal_holds(lake, actor=resolve_actor(actor))
    click.echo(
        f"legal holds placed on {len(changes.placed)} objects, released on "
        f"{len(changes.released)}; {changes.held} objects held"
    )

"""``m365lake demo``: emulator → Dagster asset → lake → SQL, in one command."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import click
import dagster as dg
import platformdirs

from m365lake.catalog import catalog_path, refresh_catalog, run_sql
from m365lake.config import GraphSettings
from m365lake.emulator.runtime import default_state_dir, start_emulator
from m365lake.errors import SearchIndexError
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.query_output import terminal_safe
from m365lake.search.hits import search
from m365lake.sources.drive_list import list_drives
from m365lake.sources.mailboxes import list_mailboxes
from m365lake.sources.teams_list import list_teams
from pipelines.assets import drive_archive, mailbox_archive
from pipelines.calendar import calendar_archive
from pipelines.contacts import contacts_archive
from pipelines.deployments import resources_for
from pipelines.partitions import drive_partitions, mailbox_partitions
from pipelines.search import search_index
from pipelines.teams import team_partitions, teams_archive

EXAMPLE_QUERY = """
SELECT from_address, count(*) AS messages, sum(size) AS bytes
FROM messages
GROUP BY from_address
ORDER BY messages DESC, from_address
LIMIT 5
""".strip()


def _disk_usage(root: Path) -> int:
    """Bytes the folder takes on disk (allocated blocks, not file sizes)."""
    return sum(path.stat().st_blocks * 512 for path in root.rglob("*") if path.is_file())


def default_demo_lake() -> Path:
    return Path(platformdirs.user_data_dir("m365lake")) / "demo" / "lake"


async def list_directory(settings: GraphSettings) -> list[str]:
    async with GraphClient(settings) as graph:
        return [mailbox.user_principal_name for mailbox in await list_mailboxes(graph)]


MAIL_COUNTS = ("messages_new", "messages_updated", "messages_deleted", "failures")
FILE_COUNTS = ("items_new", "items_updated", "items_deleted", "failures")
CONTACT_COUNTS = ("contacts_new", "contacts_updated", "contacts_deleted", "failures")
CALENDAR_COUNTS = ("events_new", "exceptions", "cancelled_occurrences", "failures")
TEAMS_COUNTS = ("channels", "messages_new", "soft_deleted", "parts", "failures")
INDEX_COUNTS = ("documents_added", "documents_replaced", "partially_indexed", "seconds")
# Matches messages in the generated tenant and in the Enron corpus.
EXAMPLE_SEARCH = "budget OR forecast"


async def list_drive_partitions(settings: GraphSettings) -> list[tuple[str, str]]:
    """Return (drive id, readable label) for every OneDrive and site library."""
    async with GraphClient(settings) as graph:
        drives, _ = await list_drives(graph)
    return [
        (drive.drive_id, f"{drive.owner_name or drive.owner_id} / {drive.name}") for drive in drives
    ]


async def list_team_partitions(settings: GraphSettings) -> list[tuple[str, str]]:
    """Return (team id, display name) for every team."""
    async with GraphClient(settings) as graph:
        return [
            (team.team_id, team.display_name or team.team_id) for team in await list_teams(graph)
        ]


def _materialize(
    asset: dg.AssetsDefinition,
    partition: str | None,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
    counts: tuple[str, ...],
) -> None:
    outcome = dg.materialize(
        [asset],
        partition_key=partition,
        instance=instance,
        resources=resources,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )
    if not outcome.success:
        click.echo(
            f"  {partition or asset.key.to_user_string()}: failed; see the messages above", err=True
        )
        return
    metadata = outcome.asset_materializations_for_node(asset.key.to_user_string())[0].metadata
    if "skipped" in metadata:
        click.echo(f"  skipped: {metadata['skipped'].value}")
        return
    click.echo(
        "  " + ", ".join(f"{name.replace('_', ' ')} {metadata[name].value}" for name in counts)
    )


def _print_example_search(lake: Lake) -> None:
    try:
        result = search(lake, EXAMPLE_SEARCH, limit=5)
    except SearchIndexError as error:
        click.echo(f"\nThe example search could not run: {error}", err=True)
        return
    click.echo(f"\nExample: m365lake search '{EXAMPLE_SEARCH}' ({result.total} matching items)")
    for hit in result.hits:
        when = hit.captured_at.date().isoformat() if hit.captured_at else ""
        custodian = terminal_safe(hit.custodian or "")
        title = terminal_safe(hit.title or "")
        click.echo(f"  {hit.workload:<5}  {custodian:<28}  {when}  {title}")


def run_demo(*, corpus: Path | None, lake_location: str | None, state_dir: Path | None) -> None:
    started = time.monotonic()
    # The demo's tenant is made up, so it never writes into the lake that real
    # backups use unless asked to with --lake.
    location = lake_location or str(default_demo_lake())
    seed = f"corpus {corpus}" if corpus else "generated tenant"
    click.echo(f"Starting the tenant emulator ({seed})…")
    emulator = start_emulator(corpus=corpus, state_dir=state_dir or default_state_dir())
    try:
        # The demo goes through the same EnvVar-configured resources as `dagster dev`.
        os.environ.update(emulator.environment())
        os.environ["M365LAKE_LAKE"] = location
        resources = resources_for("emulator")
        # Partitions come from the directory through Graph, as the sensor does.
        users = asyncio.run(list_directory(GraphSettings.from_env()))
        click.echo(
            f"Emulator up at {emulator.environment()['M365LAKE_GRAPH_URL']}; {len(users)} users."
        )
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(mailbox_partitions.name, users)
        for number, user in enumerate(users, start=1):
            click.echo(f"[{number}/{len(users)}] materializing mailbox_archive[{user}]…")
            _materialize(mailbox_archive, user, instance, resources, MAIL_COUNTS)
            click.echo(f"[{number}/{len(users)}] materializing contacts_archive[{user}]…")
            _materialize(contacts_archive, user, instance, resources, CONTACT_COUNTS)
        for number, user in enumerate(users, start=1):
            click.echo(f"[{number}/{len(users)}] materializing calendar_archive[{user}]…")
            _materialize(calendar_archive, user, instance, resources, CALENDAR_COUNTS)
        drives = asyncio.run(list_drive_partitions(GraphSettings.from_env()))
        instance.add_dynamic_partitions(drive_partitions.name, [key for key, _ in drives])
        for number, (drive_id, label) in enumerate(drives, start=1):
            click.echo(f"[{number}/{len(drives)}] materializing drive_archive[{label}]…")
            _materialize(drive_archive, drive_id, instance, resources, FILE_COUNTS)
        # After the drives, so that file links in messages resolve to archived items.
        teams = asyncio.run(list_team_partitions(GraphSettings.from_env()))
        instance.add_dynamic_partitions(team_partitions.name, [key for key, _ in teams])
        for number, (team_id, name) in enumerate(teams, start=1):
            click.echo(f"[{number}/{len(teams)}] materializing teams_archive[{name}]…")
            _materialize(teams_archive, team_id, instance, resources, TEAMS_COUNTS)
        click.echo("Materializing search_index…")
        _materialize(search_index, None, instance, resources, INDEX_COUNTS)
    finally:
        emulator.stop()

    lake = Lake.open(location)
    refresh_catalog(lake)
    _, totals = run_sql(
        lake,
        "SELECT (SELECT count(*) FROM mailboxes), (SELECT count(*) FROM messages), "
        "(SELECT coalesce(sum(size), 0) FROM messages), (SELECT count(*) FROM failures), "
        "(SELECT count(*) FROM drives), (SELECT count(*) FROM files), "
        "(SELECT coalesce(sum(size), 0) FROM files), (SELECT count(*) FROM contacts)",
    )
    mailboxes, messages, message_bytes, failures, drive_count, files, file_bytes = totals[0][:7]
    contacts = totals[0][7]
    blobs = sum(1 for _ in lake.blobs.iter_hashes())
    stored = "" if lake.is_remote else f"{_disk_usage(lake.root):,} bytes on disk; "
    click.echo("")
    click.echo(f"Lake: {lake.location}")
    click.echo(
        f"  {mailboxes} mailboxes, {messages} live messages, {message_bytes:,} bytes of MIME; "
        f"{drive_count} drives, {files} files, {file_bytes:,} bytes; {contacts} contacts; "
        f"{blobs} blobs, {failures} failures; {stored}"
        f"{time.monotonic() - started:.1f} s"
    )
    _, calendar_totals = run_sql(
        lake, "SELECT (SELECT count(*) FROM calendars), (SELECT count(*) FROM events)"
    )
    calendars, events = calendar_totals[0]
    click.echo(f"  {calendars} calendars with {events} live events (singles, series, exceptions)")
    _, teams_totals = run_sql(
        lake, "SELECT (SELECT count(*) FROM teams), (SELECT count(*) FROM channel_messages)"
    )
    team_count, channel_messages = teams_totals[0]
    click.echo(f"  {team_count} teams with {channel_messages} live channel messages")
    click.echo("")
    click.echo('Example: top senders (m365lake sql "…")')
    columns, rows = run_sql(lake, EXAMPLE_QUERY)
    width = max([len(str(row[0])) for row in rows] + [12])
    click.echo(f"  {columns[0]:<{width}}  {columns[1]:>8}  {columns[2]:>10}")
    for sender, count, size in rows:
        click.echo(f"  {terminal_safe(str(sender)):<{width}}  {count:>8}  {size:>10,}")
    _print_example_search(lake)
    duckdb_cli = shutil.which("duckdb")
    hint = (
        f"duckdb -readonly {shlex.quote(str(catalog_path(lake)))}"
        if duckdb_cli
        else 'm365lake sql "SELECT …"'
    )
    click.echo(f"\nExplore: {hint}", file=sys.stdout)

"""The ``m365lake`` command: the same library calls as the Dagster assets, for a terminal."""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from m365lake.config import GraphSettings, default_lake_location
from m365lake.errors import M365LakeError

log = logging.getLogger("m365lake")

LAKE_OPTION_HELP = (
    "Lake folder. Default: $M365LAKE_LAKE, else 'lake' under the user data directory."
)


def _lake_option(function: Any) -> Any:
    return click.option("--lake", "lake_location", default=None, help=LAKE_OPTION_HELP)(function)


def _open_lake(location: str | None) -> Any:
    from m365lake.lake import Lake

    return Lake.open(location or default_lake_location())


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO; the Graph client already writes one line per request.
    logging.getLogger("httpx").setLevel(logging.WARNING)


@click.group()
@click.option("-v", "--verbose", count=True, help="-v: one line per Graph request; -vv: debug.")
def main(verbose: int) -> None:
    """Keep your own archive of Microsoft 365 mail, searchable with SQL."""
    _configure_logging(verbose)


@main.command()
@click.option(
    "--corpus",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Seed the emulator from a maildir, .eml/.mbox folder or tenant folder.",
)
@_lake_option
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Emulator state folder (private CA). Default: under the user data directory.",
)
def demo(corpus: Path | None, lake_location: str | None, state_dir: Path | None) -> None:
    """Start the tenant emulator, archive every mailbox through the Dagster asset, query it."""
    # The demo drives the Dagster asset, so it is the one command that needs
    # Dagster; importing it here keeps the library importable without it.
    from pipelines.demo import run_demo

    try:
        run_demo(corpus=corpus, lake_location=lake_location, state_dir=state_dir)
    except M365LakeError as error:
        raise click.ClickException(str(error)) from error


@main.group()
def emulator() -> None:
    """The built-in Microsoft 365 tenant emulator."""


@emulator.command("serve")
@click.option(
    "--corpus",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Seed from a maildir, .eml/.mbox folder or tenant folder (default: generated tenant).",
)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State folder for the private CA. Default: under the user data directory.",
)
@click.option("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 picks a free one).")
def emulator_serve(corpus: Path | None, state_dir: Path | None, port: int) -> None:
    """Serve an emulated tenant over HTTPS on loopback and print the client's environment."""
    from m365lake.emulator.runtime import default_state_dir, start_emulator

    server = start_emulator(corpus=corpus, state_dir=state_dir or default_state_dir(), port=port)
    try:
        click.echo("# The emulator is running. Export these in the shell that runs m365lake:")
        for name, value in server.environment().items():
            click.echo(f"export {name}={value}")
        click.echo("# Press Ctrl-C to stop.", err=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@main.command()
@click.option(
    "--mailbox",
    "mailboxes",
    multiple=True,
    help="User principal name or id to archive (repeatable). Default: every mailbox.",
)
@_lake_option
def backup(mailboxes: tuple[str, ...], lake_location: str | None) -> None:
    """Archive mail incrementally from the tenant named by the AZURE_* variables."""
    from m365lake.backup import backup_mail
    from m365lake.catalog import refresh_catalog

    try:
        settings = GraphSettings.from_env()
        lake = _open_lake(lake_location)
        started = time.monotonic()
        summary = asyncio.run(backup_mail(settings, lake, users=list(mailboxes) or None))
        refresh_catalog(lake)
    except M365LakeError as error:
        raise click.ClickException(str(error)) from error
    click.echo(
        f"{len(summary.results)} mailboxes archived in {time.monotonic() - started:.1f} s: "
        f"{summary.total('messages_new')} new, {summary.total('messages_updated')} updated, "
        f"{summary.total('messages_deleted')} deleted, {summary.total('failures')} failures"
    )
    for user, reason in summary.skipped.items():
        click.echo(f"skipped {user}: {reason}", err=True)
    for user, reason in summary.failed.items():
        click.echo(f"failed {user}: {reason}. Run the backup again to retry it.", err=True)
    if summary.failed:
        sys.exit(1)


def _print_table(columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    cells = [[("" if value is None else str(value)) for value in row] for row in rows]
    widths = [len(name) for name in columns]
    for row in cells:
        widths = [min(max(width, len(cell)), 60) for width, cell in zip(widths, row, strict=True)]
    click.echo("  ".join(name.ljust(width) for name, width in zip(columns, widths, strict=True)))
    click.echo("  ".join("-" * width for width in widths))
    for row in cells:
        click.echo(
            "  ".join(cell[:width].ljust(width) for cell, width in zip(row, widths, strict=True))
        )
    click.echo(f"({len(rows)} rows)")


@main.command()
@click.argument("query")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@_lake_option
def sql(query: str, output_format: str, lake_location: str | None) -> None:
    """Run one read-only SQL statement against the lake's DuckDB views."""
    from m365lake.catalog import run_sql

    try:
        columns, rows = run_sql(_open_lake(lake_location), query)
    except M365LakeError as error:
        raise click.ClickException(str(error)) from error
    if output_format == "json":
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        click.echo(json.dumps(records, default=str, indent=2))
    elif output_format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        _print_table(columns, rows)


@main.command()
@_lake_option
def catalog(lake_location: str | None) -> None:
    """Rebuild catalog.duckdb so the duckdb CLI sees every committed file."""
    from m365lake.catalog import refresh_catalog

    path = refresh_catalog(_open_lake(lake_location))
    click.echo(f"catalog written: {path}\nopen it with: duckdb -readonly {path}")

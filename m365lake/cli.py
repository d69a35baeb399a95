"""The ``m365lake`` command: the same library calls as the Dagster assets, for a terminal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from m365lake.config import GraphSettings
from m365lake.discovery.cli_common import (
    LAKE_OPTION_HELP,
    actor_option,
    open_lake,
    resolve_actor,
    storage_advice,
)
from m365lake.errors import KqlSyntaxError, M365LakeError
from m365lake.sources.mail import CHECKPOINT_MESSAGES

if TYPE_CHECKING:
    from m365lake.lake import Lake

log = logging.getLogger("m365lake")


def _lake_option(function: Any) -> Any:
    return click.option("--lake", "lake_location", default=None, help=LAKE_OPTION_HELP)(function)


def _open_lake(location: str | None, *, create: bool = False) -> Lake:
    """Open the lake named by ``--lake`` or the default, exiting with a one-line error.

    ``create`` is for commands that write. Such a lake is also checked for writability,
    so a backup into a read-only folder fails before it downloads anything.
    """
    return open_lake(location, write=create, create=create)


@contextlib.contextmanager
def _reported_errors(lake_location: str) -> Iterator[None]:
    """Turn m365lake and operating-system errors into one-line messages without a traceback."""
    try:
        yield
    except M365LakeError as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:
        raise click.ClickException(
            f"{error} (lake: {lake_location}). {storage_advice(lake_location)}"
        ) from error


def _configure_logging(verbose: int) -> None:
    levels = {0: logging.WARNING, 1: logging.INFO}
    level = levels.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO; the Graph client already writes one line per request.
    logging.getLogger("httpx").setLevel(logging.WARNING)


@click.group()
@click.option("-v", "--verbose", count=True, help="-v: one line per Graph request; -vv: debug.")
def main(verbose: int) -> None:
    """Keep your own archive of Microsoft 365 mail, searchable with SQL.

    \b
    Each command finds the lake in --lake, else in $M365LAKE_LAKE, else in 'lake'
    under the user data directory. The lake is a local folder or an object storage URL:
      s3://BUCKET/PREFIX       credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
                               AWS_DEFAULT_REGION, AWS_ENDPOINT_URL (or an AWS profile)
      az://CONTAINER/PREFIX    credentials from AZURE_STORAGE_CONNECTION_STRING
    The search index and SQL catalog of a lake on object storage live in a local cache
    folder under $M365LAKE_CACHE_DIR (default: the user cache directory).
    """
    _configure_logging(verbose)


@main.command()
@click.option(
    "--corpus",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Seed the emulator from a maildir, .eml/.mbox folder or tenant folder.",
)
@click.option(
    "--lake",
    "lake_location",
    default=None,
    help="Lake folder. Default: demo/lake under the user data directory, apart from real backups.",
)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Emulator state folder (private CA). Default: under the user data directory.",
)
def demo(corpus: Path | None, lake_location: str | None, state_dir: Path | None) -> None:
    """Start the emulator, archive its mail and files through the Dagster assets, query them."""
    # The demo drives the Dagster asset, so it is the one command that needs
    # Dagster; importing it here keeps the library importable without it.
    from pipelines.demo import run_demo

    try:
        run_demo(corpus=corpus, lake_location=lake_location, state_dir=state_dir)
    except M365LakeError as error:
        raise click.ClickException(str(error)) from error


@main.group()
def emulator() -> None:
    """Run the built-in Microsoft 365 tenant emulator."""


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
@click.option(
    "--fault",
    "fault_settings",
    multiple=True,
    metavar="NAME=VALUE",
    help=(
        "Inject random faults (repeatable), e.g. --fault rate=0.05 --fault reset_rate=0.01. "
        "Rates are probabilities per request. An unknown name is rejected with the list of names."
    ),
)
@click.option(
    "--fault-seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the random faults, so a run can be replayed.",
)
@click.option(
    "--write-roles",
    is_flag=True,
    help=(
        "Also grant the app the write permissions restore needs (Mail.ReadWrite, "
        "Files.ReadWrite.All, Calendars.ReadWrite, Contacts.ReadWrite). Default: read only."
    ),
)
def emulator_serve(
    corpus: Path | None,
    state_dir: Path | None,
    port: int,
    fault_settings: tuple[str, ...],
    fault_seed: int,
    write_roles: bool,
) -> None:
    """Serve an emulated tenant over HTTPS on loopback and print the client's environment."""
    from m365lake.emulator.app import EmulatorOptions
    from m365lake.emulator.faults import plan_from_settings
    from m365lake.emulator.records import RESTORE_ROLES
    from m365lake.emulator.runtime import default_state_dir, start_emulator

    settings = dict(setting.partition("=")[::2] for setting in fault_settings)
    try:
        plan = plan_from_settings(fault_seed, settings)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--fault") from error
    try:
        server = start_emulator(
            corpus=corpus,
            state_dir=state_dir or default_state_dir(),
            port=port,
            options=EmulatorOptions(faults=plan),
            extra_roles=RESTORE_ROLES if write_roles else (),
        )
    except M365LakeError as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:
        raise click.ClickException(f"the emulator could not start: {error}") from error
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


def _check_mailboxes(
    _context: click.Context, _parameter: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    stripped = tuple(value.strip() for value in values)
    if any(not value for value in stripped):
        raise click.BadParameter(
            "the value is empty, but --mailbox needs a user principal name or object id"
        )
    return stripped


_FLAG_WORKLOADS = {
    "--mailbox": ("mail", "calendar", "contacts"),
    "--drive": ("files",),
    "--team": ("teams",),
}
"""The workloads each selection flag of ``backup`` applies to, besides ``all``."""


def _check_workload_flags(workload: str, given_flags: dict[str, tuple[str, ...]]) -> None:
    """Raise a usage error for a selection flag that the chosen workload would ignore."""
    if workload == "all":
        return
    for name, given in given_flags.items():
        applies = _FLAG_WORKLOADS[name]
        if given and workload not in applies:
            choices = ", ".join(f"--workload {choice}" for choice in (*applies, "all"))
            raise click.UsageError(
                f"{name} does not apply to --workload {workload}: it selects what "
                f"{choices} archives. Remove {name}, or choose one of those workloads."
            )


@dataclass
class _RunOutcome:
    """The destination of one workload's counts, failures and skips in ``backup``."""

    failed: dict[str, str]
    skipped: dict[str, str]
    started: float
    """``time.monotonic()`` when the workload's run started."""
    prefix: str = ""
    """Put before each mailbox, drive or team name in the failed and skipped lines."""

    def report(self, what: str, summary: Any, item: str) -> None:
        """Print the run's counts of ``<item>_new``/``_updated``/``_deleted`` and failures."""
        click.echo(
            f"{what} archived in {time.monotonic() - self.started:.1f} s: "
            f"{summary.total(f'{item}_new')} new, {summary.total(f'{item}_updated')} updated, "
            f"{summary.total(f'{item}_deleted')} deleted, {summary.total('failures')} failures"
        )
        self.failed.update({self.prefix + name: why for name, why in summary.failed.items()})
        self.skipped.update({self.prefix + name: why for name, why in summary.skipped.items()})


@main.command()
@click.option(
    "--mailbox",
    "mailboxes",
    multiple=True,
    callback=_check_mailboxes,
    help="User principal name or id to archive (repeatable). Default: every mailbox.",
)
@click.option(
    "--drive",
    "drives",
    multiple=True,
    help="Graph drive id to archive (repeatable). Default: every OneDrive and site library.",
)
@click.option(
    "--team",
    "teams",
    multiple=True,
    help=(
        "Team whose channels to archive, by id or display name (repeatable). Default: every team."
    ),
)
@click.option(
    "--workload",
    type=click.Choice(["all", "mail", "files", "calendar", "contacts", "teams"]),
    default="all",
    show_default=True,
    help="What to archive: mail, files, calendars, Outlook contacts, Teams channels, or all.",
)
@_lake_option
@click.option(
    "--checkpoint-every",
    "checkpoint_messages",
    type=click.IntRange(min=1),
    default=CHECKPOINT_MESSAGES,
    show_default=True,
    help="Messages per mailbox between checkpoint commits, so an interrupted run resumes.",
)
def backup(
    mailboxes: tuple[str, ...],
    drives: tuple[str, ...],
    teams: tuple[str, ...],
    workload: str,
    lake_location: str | None,
    checkpoint_messages: int,
) -> None:
    """Archive mail, files, calendars, contacts and Teams incrementally from the AZURE_* tenant."""
    _check_workload_flags(workload, {"--mailbox": mailboxes, "--drive": drives, "--team": teams})
    from m365lake.backup import backup_mail
    from m365lake.backup_calendar import backup_calendars
    from m365lake.backup_contacts import backup_contacts
    from m365lake.backup_files import backup_files
    from m365lake.backup_teams import backup_teams
    from m365lake.catalog import refresh_catalog

    try:
        settings = GraphSettings.from_env()
    except M365LakeError as error:
        raise click.ClickException(str(error)) from error
    lake = _open_lake(lake_location, create=True)
    failed: dict[str, str] = {}
    skipped: dict[str, str] = {}
    with _reported_errors(lake.location):
        if workload in ("mail", "all"):
            started = time.monotonic()
            mail = asyncio.run(
                backup_mail(
                    settings,
                    lake,
                    users=list(mailboxes) or None,
                    heartbeat=lambda progress: click.echo(progress.describe(), err=True),
                    checkpoint_messages=checkpoint_messages,
                )
            )
            _RunOutcome(failed, skipped, started).report(
                f"{len(mail.results)} mailboxes", mail, "messages"
            )
        if workload in ("files", "all"):
            started = time.monotonic()
            files = asyncio.run(backup_files(settings, lake, drives=list(drives) or None))
            _RunOutcome(failed, skipped, started).report(
                f"{len(files.results)} drives", files, "items"
            )
        if workload in ("calendar", "all"):
            started = time.monotonic()
            calendars = asyncio.run(backup_calendars(settings, lake, users=list(mailboxes) or None))
            _RunOutcome(failed, skipped, started, prefix="calendars of ").report(
                f"calendars of {len(calendars.results)} mailboxes", calendars, "events"
            )
        if workload in ("contacts", "all"):
            started = time.monotonic()
            contacts = asyncio.run(backup_contacts(settings, lake, users=list(mailboxes) or None))
            _RunOutcome(failed, skipped, started, prefix="contacts of ").report(
                f"contacts of {len(contacts.results)} mailboxes", contacts, "contacts"
            )
        if workload in ("teams", "all"):
            started = time.monotonic()
            archived = asyncio.run(backup_teams(settings, lake, teams=list(teams) or None))
            _RunOutcome(failed, skipped, started, prefix="team ").report(
                f"{len(archived.results)} teams", archived, "messages"
            )
        refresh_catalog(lake)
    for name, reason in skipped.items():
        click.echo(f"skipped {name}: {reason}", err=True)
    for name, reason in failed.items():
        click.echo(f"failed {name}: {reason}. Run the backup again to retry it.", err=True)
    if failed:
        sys.exit(1)


@main.command()
@click.argument("query", required=False)
@click.option(
    "--file",
    "query_file",
    type=click.File("r", encoding="utf-8"),
    help="Read the statement from this file (- for standard input), e.g. one in queries/.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help=(
        "Output format. table cuts values at 100 characters (marked with …) and shows "
        "line breaks as ⏎. json and csv keep whole values: binary as base64 text, lists "
        "as JSON arrays, timestamps in ISO 8601."
    ),
)
@click.option(
    "--timeout",
    "timeout_seconds",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    default=30.0,
    show_default=True,
    help="Seconds the query may run before it is interrupted.",
)
@_lake_option
def sql(
    query: str | None,
    query_file: TextIO | None,
    output_format: str,
    timeout_seconds: float,
    lake_location: str | None,
) -> None:
    """Run one read-only SQL statement against the lake's DuckDB views."""
    from m365lake.catalog import run_sql
    from m365lake.query_output import format_table, to_json, write_csv

    if (query is None) == (query_file is None):
        raise click.UsageError("give the statement either as QUERY or with --file, not both")
    if query_file is not None:
        query = query_file.read()
    assert query is not None
    lake = _open_lake(lake_location)
    with _reported_errors(lake.location):
        columns, rows = run_sql(lake, query, timeout_seconds=timeout_seconds)
    if output_format == "json":
        click.echo(to_json(columns, rows))
    elif output_format == "csv":
        write_csv(columns, rows, sys.stdout)
    else:
        for line in format_table(columns, rows):
            click.echo(line)


@main.command()
@_lake_option
def catalog(lake_location: str | None) -> None:
    """Rebuild catalog.duckdb so the duckdb CLI reads every committed file."""
    from m365lake.catalog import refresh_catalog

    lake = _open_lake(lake_location)
    with _reported_errors(lake.location):
        path = refresh_catalog(lake)
    click.echo(f"catalog written: {path}\nopen it with: duckdb -readonly {shlex.quote(str(path))}")
    if lake.is_remote:
        click.echo(
            f"note: its views read the tables at {lake.location}, which the duckdb CLI can "
            "reach only with its httpfs (S3) or azure extension loaded and the credentials "
            "given as a DuckDB secret; `m365lake sql` needs neither",
            err=True,
        )


OUTPUT_FORMAT_OPTION = click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output format: a table for reading, or JSON or CSV with whole values for scripts.",
)
EXCLUDE_DELETED_OPTION = click.option(
    "--exclude-deleted",
    is_flag=True,
    help="Leave out items the tenant has deleted. By default they are searched too.",
)


def _kql_error_message(error: KqlSyntaxError, query: str) -> str:
    """Return the parser's message with the query and a caret under the failing position."""
    message = str(error).rstrip()
    if "^" not in message:
        text = error.query.replace("\n", " ").replace("\t", " ")
        message += f"\n    {text}\n    {' ' * max(error.position, 0)}^"
    if error.query != query:
        message = f"in keyword {error.query!r}: {message}"
    return message


def _warn_if_behind(commits_behind: int) -> None:
    if commits_behind:
        click.echo(
            f"note: the index is {commits_behind} commit(s) behind the lake; run "
            "`m365lake index` to search the newest archived items too",
            err=True,
        )


@main.command("index")
@click.option(
    "--rebuild",
    is_flag=True,
    help="Index every item again from the lake's tables, replacing the current index.",
)
@click.option(
    "--optimize",
    is_flag=True,
    help=(
        "After the update, merge the index's segments and delete files it no longer uses, "
        "so searches read fewer files."
    ),
)
@_lake_option
def index_command(rebuild: bool, optimize: bool, lake_location: str | None) -> None:
    """Bring the search index up to date with the lake's commits (incremental)."""
    from m365lake.search.index import index_path, update_index
    from m365lake.search.optimize import optimize_index

    lake = _open_lake(lake_location)
    with _reported_errors(lake.location):
        update = update_index(
            lake,
            rebuild=rebuild,
            progress=lambda progress: click.echo(
                f"… {progress.documents_added + progress.documents_replaced} documents "
                f"written up to commit {progress.manifest_seq}",
                err=True,
            ),
        )
    click.echo(
        f"{update.documents_added} documents added, {update.documents_replaced} replaced "
        f"({update.marked_deleted} deleted in the tenant), {update.documents_removed} "
        f"removed by purges, {update.partially_indexed} partially indexed, in "
        f"{update.seconds:.1f} s"
    )
    click.echo(
        f"the index at {index_path(lake)} contains {update.documents_total} documents "
        f"({update.partially_indexed_total} partially indexed) up to commit "
        f"{update.manifest_seq}, {update.index_bytes / 1_000_000:.1f} MB"
    )
    if optimize:
        with _reported_errors(lake.location):
            optimization = optimize_index(lake)
        click.echo(optimization.describe())


@main.command("search")
@click.argument("query")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Number of best-scoring items to list; the total count covers every match.",
)
@OUTPUT_FORMAT_OPTION
@EXCLUDE_DELETED_OPTION
@actor_option
@_lake_option
def search_command(
    query: str,
    limit: int,
    output_format: str,
    exclude_deleted: bool,
    actor: str | None,
    lake_location: str | None,
) -> None:
    """Search the archive with a KQL query, as in Microsoft Purview content search.

    Each search is recorded in the audit trail with the actor, the query and the counts.
    """
    from m365lake.query_output import format_table, json_value, write_csv
    from m365lake.search.audited import search_audited
    from m365lake.search.hits import HIT_COLUMNS

    actor_name = resolve_actor(actor)
    lake = _open_lake(lake_location)
    with _reported_errors(lake.location), _reported_kql_errors(query):
        # The audit event is written before any result is shown, so a lake that cannot
        # record it fails here rather than after the results were seen.
        lake.check_writable()
        result = search_audited(
            lake, query, actor=actor_name, limit=limit, include_deleted=not exclude_deleted
        ).result
    rows = [hit.row() for hit in result.hits]
    if output_format == "json":
        records = [dict(zip(HIT_COLUMNS, row, strict=True)) for row in rows]
        document = {"query": query, "total": result.total, "hits": records}
        click.echo(json.dumps(json_value(document), indent=2, ensure_ascii=False))
    elif output_format == "csv":
        write_csv(HIT_COLUMNS, rows, sys.stdout)
        click.echo(f"{len(rows)} of {result.total} matching items listed", err=True)
    else:
        for line in format_table(HIT_COLUMNS, rows)[:-1]:
            click.echo(line)
        click.echo(f"({len(rows)} of {result.total} matching items)")
    _warn_if_behind(result.commits_behind)


@contextlib.contextmanager
def _reported_kql_errors(query: str) -> Iterator[None]:
    try:
        yield
    except KqlSyntaxError as error:
        raise click.ClickException(_kql_error_message(error, query)) from error


def _read_keywords(keywords: tuple[str, ...], keywords_file: TextIO | None) -> list[str]:
    """Return the keywords from the options: one KQL keyword per file line, # for comments."""
    result = [keyword.strip() for keyword in keywords]
    if keywords_file is not None:
        for line in keywords_file:
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                result.append(stripped)
    if any(not keyword for keyword in result):
        raise click.BadParameter("a keyword is empty; give each --keyword some KQL")
    return result


@main.command("search-stats")
@click.argument("query")
@click.option(
    "--keyword",
    "keywords",
    multiple=True,
    help="A KQL keyword to count ANDed with QUERY (repeatable).",
)
@click.option(
    "--keywords-file",
    type=click.File("r", encoding="utf-8"),
    help="Read keywords from this file, one KQL keyword per line (# starts a comment).",
)
@OUTPUT_FORMAT_OPTION
@EXCLUDE_DELETED_OPTION
@actor_option
@_lake_option
def search_stats_command(
    query: str,
    keywords: tuple[str, ...],
    keywords_file: TextIO | None,
    output_format: str,
    exclude_deleted: bool,
    actor: str | None,
    lake_location: str | None,
) -> None:
    """Count items and bytes per keyword, custodian and location, as Purview reports them.

    Each report is recorded in the audit trail with the actor, the query, the keywords
    and the totals.
    """
    from m365lake.query_output import format_table, json_value
    from m365lake.search.audited import search_statistics_audited
    from m365lake.search.stats import COLUMNS

    keyword_list = _read_keywords(keywords, keywords_file)
    actor_name = resolve_actor(actor)
    lake = _open_lake(lake_location)
    with _reported_errors(lake.location), _reported_kql_errors(query):
        lake.check_writable()
        statistics = search_statistics_audited(
            lake, query, keyword_list, actor=actor_name, include_deleted=not exclude_deleted
        ).statistics
    if output_format == "json":
        click.echo(json.dumps(json_value(statistics.to_dict()), indent=2, ensure_ascii=False))
    elif output_format == "csv":
        statistics.write_csv(sys.stdout)
    else:
        for line in format_table(COLUMNS, statistics.rows())[:-1]:
            click.echo(line)
    _warn_if_behind(statistics.commits_behind)


# The case, hold, audit, retention and verify commands live beside the code they drive.
# Registered last because that module's import of this one must find ``main`` defined.
from m365lake.discovery.cli import register as _register_discovery  # noqa: E402

_register_discovery(main)

from m365lake.restore.cli import register as _register_restore  # noqa: E402

_register_restore(main)

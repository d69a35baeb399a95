"""The ``m365lake hold``, ``audit`` and ``verify`` commands."""

from __future__ import annotations

import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import click

from m365lake.discovery import holds
from m365lake.discovery.audit import audit_head
from m365lake.discovery.audit_chain import read_audit_events
from m365lake.discovery.audit_compaction import MIN_FILES, compact_audit_trail
from m365lake.discovery.cli_common import (
    actor_option,
    echo_rows,
    format_option,
    lake_option,
    open_lake,
    reported_errors,
    resolve_actor,
)
from m365lake.discovery.integrity import verify_archive
from m365lake.errors import LakeIntegrityError
from m365lake.lake.encryption import WHERE_KEYS_COME_FROM

_DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]


def _as_utc(value: datetime | None, *, end: bool) -> datetime | None:
    """Read a --start/--end value as UTC; a bare end date includes that whole day."""
    if value is None:
        return None
    moment = value.replace(tzinfo=UTC)
    if end and moment.time() == datetime.min.time():
        moment += timedelta(days=1)
    return moment


@click.group()
def hold() -> None:
    """Place, release and list legal holds."""


@hold.command("place")
@click.argument("case_id")
@click.option(
    "--custodian",
    "custodian_ids",
    multiple=True,
    help="Custodian id of the case to hold (repeatable). Default: every custodian of the case.",
)
@click.option("--query", "kql", default=None, help="KQL query: hold only the items it matches.")
@click.option(
    "--all-locations",
    is_flag=True,
    help="With --query: hold matching items anywhere in the lake, not only the custodians'.",
)
@click.option(
    "--start",
    type=click.DateTime(_DATE_FORMATS),
    default=None,
    help=(
        "Hold only versions dated on or after this UTC date or time "
        "(mail: received; files: modified)."
    ),
)
@click.option(
    "--end",
    type=click.DateTime(_DATE_FORMATS),
    default=None,
    help="Hold only versions dated before this UTC time; a bare date includes that whole day.",
)
@click.option("--name", default=None, help="A name for the hold.")
@actor_option
@lake_option
def hold_place(
    case_id: str,
    custodian_ids: tuple[str, ...],
    kql: str | None,
    all_locations: bool,
    start: datetime | None,
    end: datetime | None,
    name: str | None,
    actor: str | None,
    lake_location: str | None,
) -> None:
    """Place a custodian hold, or with --query a query hold, and print the hold id."""
    lake = open_lake(lake_location, write=True)
    with reported_errors(lake):
        placed = holds.place_hold(
            lake,
            case_id,
            actor=resolve_actor(actor),
            custodian_ids=list(custodian_ids) or None,
            kql=kql,
            all_locations=all_locations,
            date_start=_as_utc(start, end=False),
            date_end=_as_utc(end, end=True),
            name=name,
        )
    click.echo(placed.hold_id)


@hold.command("release")
@click.argument("hold_id")
@click.option("--reason", required=True, help="Why the preservation may end (recorded).")
@actor_option
@lake_option
def hold_release(hold_id: str, reason: str, actor: str | None, lake_location: str | None) -> None:
    """Release an active hold."""
    lake = open_lake(lake_location, write=True)
    with reported_errors(lake):
        holds.release_hold(lake, hold_id, actor=resolve_actor(actor), reason=reason)
    click.echo(f"hold {hold_id} released")


@hold.command("list")
@click.option("--case", "case_id", default=None, help="Only the holds of this case.")
@click.option("--active", "active_only", is_flag=True, help="Leave out released holds.")
@format_option
@lake_option
def hold_list(
    case_id: str | None, active_only: bool, output_format: str, lake_location: str | None
) -> None:
    """List holds with their scope and status."""
    lake = open_lake(lake_location, write=False)
    with reported_errors(lake):
        found = holds.list_holds(lake, case_id=case_id, active_only=active_only)
    columns = [
        "hold_id",
        "case_id",
        "kind",
        "status",
        "custodian_ids",
        "kql",
        "date_start",
        "date_end",
        "placed_by",
        "placed_at",
        "release_reason",
    ]
    rows = [
        (
            item.hold_id,
            item.case_id,
            item.kind,
            item.status,
            list(item.custodian_ids) if item.custodian_ids is not None else "all locations",
            item.kql,
            item.date_start,
            item.date_end,
            item.placed_by,
            item.placed_at,
            item.release_reason,
        )
        for item in found
    ]
    echo_rows(columns, rows, output_format)


@click.group("audit", invoke_without_command=True)
@click.option("--case", "case_id", default=None, help="Only the events of this case.")
@click.option("--action", default=None, help="Only events of this action, e.g. hold or purge.")
@format_option
@lake_option
@click.pass_context
def audit_command(
    context: click.Context,
    case_id: str | None,
    action: str | None,
    output_format: str,
    lake_location: str | None,
) -> None:
    """Print the audit trail in sequence order, and the hash of its newest event.

    Keep the printed head hash somewhere outside the lake: `m365lake verify` proves the
    events up to it were not changed, removed or reordered since.
    """
    if context.invoked_subcommand is not None:
        return
    lake = open_lake(lake_location, write=False)
    with reported_errors(lake):
        events = read_audit_events(lake, case_id=case_id, action=action)
        head_seq, head_hash = audit_head(lake)
    columns = ["seq", "at", "actor", "action", "case_id", "parameters", "counts", "hash"]
    rows = [
        (
            event.seq,
            event.at,
            event.actor,
            event.action,
            event.case_id,
            event.parameters,
            event.counts,
            event.hash,
        )
        for event in events
    ]
    echo_rows(columns, rows, output_format)
    click.echo(
        f"audit head: event {head_seq}, hash {head_hash or 'none'} "
        f"(check it later with: m365lake verify --audit-head {head_seq}:{head_hash or ''})",
        err=True,
    )


@audit_command.command("compact")
@click.option(
    "--min-files",
    type=click.IntRange(min=2),
    default=MIN_FILES,
    show_default=True,
    help="Compact a month only when it has at least this many audit event files.",
)
@actor_option
@lake_option
def audit_compact(min_files: int, actor: str | None, lake_location: str | None) -> None:
    """Merge each month's audit event files into one file, in one commit per month.

    The events and their hash chain are unchanged; `m365lake verify` checks them as
    before. A trail that fails verification is not compacted.
    """
    lake = open_lake(lake_location, write=True)
    with reported_errors(lake):
        result = compact_audit_trail(lake, actor=resolve_actor(actor), min_files=min_files)
    if not result.periods:
        click.echo(f"nothing to compact: no month has {min_files} or more audit files", err=True)
        return
    for period, files in sorted(result.periods.items()):
        click.echo(f"{period}: merged {files} files")
    click.echo(
        f"compacted {result.events} audit events from {result.files_removed} files into "
        f"{len(result.periods)} file(s)",
        err=True,
    )


def _parse_anchor(text: str | None) -> tuple[int, str] | None:
    if text is None:
        return None
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise click.BadParameter(
            f"{text!r} is not SEQ:HASH, e.g. 42:9f86d081…; copy it from the line "
            "`m365lake audit` prints",
            param_hint="--audit-head",
        )
    return int(seq), digest.lower()


@click.command("verify")
@click.option(
    "--no-blobs",
    is_flag=True,
    help="Skip reading back blobs; check only the manifest chain, table files and audit chain.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Read back N blobs drawn at random instead of every blob.",
)
@click.option(
    "--seed", type=int, default=None, help="Seed for --sample, to repeat an earlier draw."
)
@click.option(
    "--audit-head",
    "audit_head_text",
    default=None,
    metavar="SEQ:HASH",
    help=(
        "An audit head printed earlier by `m365lake audit` and kept outside the lake; "
        "the trail must still contain that event with that hash."
    ),
)
@lake_option
def verify_command(
    no_blobs: bool,
    sample: int | None,
    seed: int | None,
    audit_head_text: str | None,
    lake_location: str | None,
) -> None:
    """Check the manifest chain, every committed file, the blobs and the audit chain.

    Prints each problem found (the file, blob, manifest or audit event, with the
    expected and the actual hash) and exits with status 1, or prints one line with the
    counts checked.
    """
    lake = open_lake(lake_location, write=False)
    missing_keys: Counter[str] = Counter()
    with reported_errors(lake):
        try:
            counts = verify_archive(
                lake,
                blobs=not no_blobs,
                blob_sample=sample,
                seed=seed,
                audit_anchor=_parse_anchor(audit_head_text),
                missing_keys=missing_keys,
            )
        except LakeIntegrityError as error:
            if not error.problems:
                raise
            for problem in error.problems:
                click.echo(problem)
            _echo_missing_keys(missing_keys)
            click.echo(
                f"verification of the lake at {lake.location} failed with {len(error.problems)} "
                "problem(s). Restore the files named above from a copy of the lake",
                err=True,
            )
            sys.exit(1)
    _echo_missing_keys(missing_keys)
    checked = f"{counts['manifests']} manifests, {counts['files']} files"
    if no_blobs:
        checked += ", blobs skipped (--no-blobs)"
    elif sample is not None:
        checked += (
            f", {counts['blobs']} of {counts['blobs_stored']} blobs "
            f"(random sample, --seed {counts['blob_seed']})"
        )
    else:
        checked += f", {counts['blobs']} blobs"
    checked += f", {counts['audit_events']} audit events"
    if missing_keys:
        checked += f"; {sum(missing_keys.values())} encrypted blobs and table files not checked"
    click.echo(f"OK: the lake at {lake.location} passed verification: {checked}")


def _echo_missing_keys(missing_keys: Counter[str]) -> None:
    """Print which keys were missing, so an unchecked file is not mistaken for damage."""
    if not missing_keys:
        return
    for key_id, count in sorted(missing_keys.items()):
        click.echo(
            f"not checked: {count} encrypted blobs and table files need key id {key_id!r}, "
            "which is not loaded",
            err=True,
        )
    click.echo(
        "The manifest chain, the table file hashes and the audit chain need no key and were "
        "checked. To check the encrypted content too, add those keys "
        f"({WHERE_KEYS_COME_FROM}) and run verify again",
        err=True,
    )

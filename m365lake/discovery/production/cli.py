"""The ``m365lake export`` command."""

from __future__ import annotations

import time
from pathlib import Path

import click

from m365lake.discovery.cli_common import (
    actor_option,
    lake_option,
    open_lake,
    reported_errors,
    resolve_actor,
)
from m365lake.discovery.production.dedup import DEDUP_SCOPES
from m365lake.discovery.production.options import NATIVE_NAMES, ExportMode, ExportOptions

PROGRESS_SECONDS = 5.0


@click.command("export")
@click.argument("case_id")
@click.argument("destination", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--search",
    "search_id",
    default=None,
    help="Saved search of the case to export, by id or name. Default: its only saved search.",
)
@click.option("--kql", default=None, help="KQL query to export instead of a saved search.")
@click.option(
    "--prefix", default="PROD", show_default=True, help="Control number prefix, e.g. ABC."
)
@click.option(
    "--start",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="First control number, to continue the numbering of an earlier production.",
)
@click.option(
    "--digits",
    type=click.IntRange(1, 15),
    default=7,
    show_default=True,
    help="Digits of the number part of a control number, zero-padded.",
)
@click.option(
    "--dedup",
    type=click.Choice(DEDUP_SCOPES),
    default="global",
    show_default=True,
    help=(
        "Suppress duplicate families: across all custodians (global), within each "
        "custodian (custodian), or not at all (none)."
    ),
)
@click.option(
    "--native-names",
    type=click.Choice(NATIVE_NAMES),
    default="control",
    show_default=True,
    help=(
        "Name natives by control number only (control), or by control number and a "
        "Windows-safe copy of the original name (original)."
    ),
)
@click.option(
    "--folder-size",
    type=click.IntRange(1, 100_000),
    default=1_000,
    show_default=True,
    help="Documents per numbered folder under NATIVES/ and TEXT/.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Finish an interrupted export in DESTINATION with the same query and options.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an earlier production in DESTINATION; a folder with other files is rejected.",
)
@actor_option
@lake_option
def export_command(
    case_id: str,
    destination: Path,
    search_id: str | None,
    kql: str | None,
    prefix: str,
    start: int,
    digits: int,
    dedup: str,
    native_names: str,
    folder_size: int,
    resume: bool,
    overwrite: bool,
    actor: str | None,
    lake_location: str | None,
) -> None:
    """Export a case's search into DESTINATION as a production with load files.

    Writes natives, extracted text, a Concordance DAT load file and CSV, a duplicates
    report, a chain-of-custody report and MANIFEST.sha256 (written last), and records
    the export in the audit trail. Only items of the case's custodians are exported.
    """
    if resume and overwrite:
        raise click.UsageError("give --resume or --overwrite, not both")
    mode: ExportMode = "new"
    if resume:
        mode = "resume"
    elif overwrite:
        mode = "overwrite"
    options = ExportOptions(
        prefix=prefix,
        start=start,
        digits=digits,
        dedup=dedup,  # type: ignore[arg-type]  # click.Choice checked it
        native_names=native_names,  # type: ignore[arg-type]  # click.Choice checked it
        folder_size=folder_size,
    )
    # Imported here: the export pulls in the search index, which other commands do not need.
    from m365lake.discovery.production.export import export_production

    lake = open_lake(lake_location, write=True)
    last_report = [time.monotonic()]

    def report_progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last_report[0] >= PROGRESS_SECONDS:
            last_report[0] = now
            click.echo(f"… {done} of {total} families written", err=True)

    with reported_errors(lake):
        result = export_production(
            lake,
            case_id,
            destination,
            actor=resolve_actor(actor),
            kql=kql,
            search_id=search_id,
            options=options,
            mode=mode,
            progress=report_progress,
        )
    counts = result.counts
    click.echo(
        f"exported {counts['documents']} documents ({counts['families_produced']} families, "
        f"{counts['attachments']} attachments) as {result.first_control or '-'} to "
        f"{result.last_control or '-'} into {result.destination}"
    )
    click.echo(
        f"{counts['hits']} hits: {counts['out_of_scope']} outside the case's custodians, "
        f"{counts['duplicates']} duplicates suppressed, {counts['errors']} failed, "
        f"{counts['not_found']} no longer archived"
    )
    click.echo(
        f"manifest SHA-256 {result.manifest_sha256}, recorded as audit event {result.audit_seq}"
    )
    if counts["errors"]:
        click.echo(
            f"{counts['errors']} families failed; REPORTS/chain_of_custody.json lists them",
            err=True,
        )

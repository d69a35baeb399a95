"""Options and helpers shared by the discovery commands."""

from __future__ import annotations

import contextlib
import getpass
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import click

from m365lake.config import ENV_LAKE, default_lake_location
from m365lake.errors import LakeNotFoundError, M365LakeError
from m365lake.lake import Lake
from m365lake.query_output import format_table, to_json

ENV_ACTOR = "M365LAKE_ACTOR"

LAKE_OPTION_HELP = (
    "Lake folder, or object storage URL: s3://BUCKET/PREFIX or az://CONTAINER/PREFIX. "
    "Default: $M365LAKE_LAKE, else 'lake' under the user data directory."
)


def lake_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--lake", "lake_location", default=None, help=LAKE_OPTION_HELP)(function)


def storage_advice(location: str) -> str:
    """Return what to check when reading or writing the lake at ``location`` failed."""
    if "://" in location and not location.startswith("file://"):
        return (
            "Check the lake URL, the credentials in the environment (AWS_* for S3, "
            "AZURE_STORAGE_* for Azure), that the store is reachable, and that the disk of "
            "the local cache folder ($M365LAKE_CACHE_DIR) has free space"
        )
    return "Check that the folder is readable and writable and that the disk has free space"


def actor_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--actor",
        envvar=ENV_ACTOR,
        default=None,
        help=(
            "Who is acting, as recorded in the audit trail. Default: $M365LAKE_ACTOR, "
            "else the operating-system user."
        ),
    )(function)


def format_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="Output format: a table to read, or JSON for scripts.",
    )(function)


def resolve_actor(actor: str | None) -> str:
    """Return ``--actor``, or the operating-system user when it was not given."""
    if actor is not None and actor.strip():
        return actor.strip()
    try:
        return getpass.getuser()
    except (OSError, KeyError) as error:
        raise click.ClickException(
            f"could not read the operating-system user name ({error}); give --actor or "
            f"set {ENV_ACTOR}"
        ) from error


def open_lake(location: str | None, *, write: bool, create: bool = False) -> Lake:
    """Open a lake, exiting with a one-line error; ``write`` checks writability.

    ``create`` makes a new lake where there is none, for commands that archive.
    """
    path = location or default_lake_location()
    try:
        lake = Lake.open(path, create=create)
        if write:
            lake.check_writable()
    except LakeNotFoundError as error:
        raise click.ClickException(
            f"no lake at {error.root}: run `m365lake backup` (or `m365lake demo`) first, "
            f"or point --lake or {ENV_LAKE} at an existing lake"
        ) from error
    except M365LakeError as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:
        raise click.ClickException(
            f"could not open the lake at {path}: {error}. Check the location given by --lake "
            f"or {ENV_LAKE}"
        ) from error
    return lake


@contextlib.contextmanager
def reported_errors(lake: Lake) -> Iterator[None]:
    """Turn m365lake and operating-system errors into one-line messages without a traceback."""
    try:
        yield
    except M365LakeError as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:
        raise click.ClickException(
            f"{error} (lake: {lake.location}). {storage_advice(lake.location)}"
        ) from error


def echo_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], output_format: str) -> None:
    if output_format == "json":
        click.echo(to_json(columns, rows))
        return
    for line in format_table(columns, rows):
        click.echo(line)

"""Integrity checks after each backup: the manifest chain and a sample of the blobs written.

Each backup reads back up to 20 of the blobs its commit references, so a damaged write
is likely found by the backup that made it. An edited manifest or a gap in the chain is
found by the next backup of any mailbox, drive or team, not only by the daily
``lake_integrity`` check before the purge. Both checks fail with ERROR severity but do
not block, because neither the index update nor the next backups make the damage worse,
so backups go on while an administrator investigates.
"""

from collections.abc import Callable

import dagster as dg

from m365lake.discovery import integrity
from m365lake.errors import LakeIntegrityError
from pipelines.assets import drive_archive, mailbox_archive
from pipelines.calendar import calendar_archive
from pipelines.checks import _mailbox_id, _partition_key
from pipelines.contacts import contacts_archive
from pipelines.resources import LakeResource
from pipelines.teams import teams_archive

COMMIT_BLOB_SAMPLE = 20
"""Blobs of a backup's newest commit read back and hashed. Each is read in full."""

_PROBLEMS_SHOWN = 20

ContainerOf = Callable[[LakeResource, str], str | None]


def _result(counts: dict[str, int], problems: list[str], missing: str) -> dg.AssetCheckResult:
    description = None
    if problems:
        description = f"{len(problems)} problem(s); run `m365lake verify` for the whole lake"
    elif not counts.get("commit_seq"):
        description = missing
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            **{name: int(value) for name, value in counts.items()},
            "problems": dg.MetadataValue.md(
                "\n".join(f"- {problem}" for problem in problems[:_PROBLEMS_SHOWN]) or "none"
            ),
        },
    )


def _container(container_of: ContainerOf, lake: LakeResource, key: str) -> str:
    """Return the mailbox or drive id of partition ``key``, or the key itself when unknown.

    A mailbox id is looked up in the catalog, which cannot be read while the manifest
    chain is broken. The key then matches no commit, and the chain check reports the break.
    """
    try:
        return container_of(lake, key) or key
    except LakeIntegrityError:
        return key


def _chain_check(
    asset: dg.AssetsDefinition, name: str, container_of: ContainerOf, kind: str
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name=name,
        description=(
            "Every manifest's link to the one before it, and the SHA-256 of every file the "
            "partition's newest commit lists."
        ),
    )
    def check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        key = _partition_key(context)
        counts, problems = integrity.check_container_chain(
            lake.open(), _container(container_of, lake, key), kind
        )
        return _result(counts, problems, f"no commit of {key} is in the lake")

    return check


def _blob_check(
    asset: dg.AssetsDefinition, name: str, container_of: ContainerOf, kind: str
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name=name,
        description=(
            f"Reads back up to {COMMIT_BLOB_SAMPLE} random blobs that rows of the partition's "
            "newest commit reference and checks each one's SHA-256."
        ),
    )
    def check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        key = _partition_key(context)
        counts, problems = integrity.sample_commit_blobs(
            lake.open(), _container(container_of, lake, key), sample=COMMIT_BLOB_SAMPLE, kind=kind
        )
        return _result(counts, problems, f"no commit of {key} is in the lake")

    return check


def _same_key(lake: LakeResource, key: str) -> str:
    """Return the partition key, which is the drive or team id itself."""
    return key


# A mailbox partition is backed up by three assets, each with its own commits, so every
# check reads the newest commit of its own workload.
mailbox_manifest_chain = _chain_check(
    mailbox_archive, "mailbox_manifest_chain", _mailbox_id, "mail"
)
mailbox_blob_sample = _blob_check(mailbox_archive, "mailbox_blob_sample", _mailbox_id, "mail")
drive_manifest_chain = _chain_check(drive_archive, "drive_manifest_chain", _same_key, "files")
drive_blob_sample = _blob_check(drive_archive, "drive_blob_sample", _same_key, "files")
calendar_manifest_chain = _chain_check(
    calendar_archive, "calendar_manifest_chain", _mailbox_id, "calendar"
)
calendar_blob_sample = _blob_check(
    calendar_archive, "calendar_blob_sample", _mailbox_id, "calendar"
)
contacts_manifest_chain = _chain_check(
    contacts_archive, "contacts_manifest_chain", _mailbox_id, "contacts"
)
contacts_blob_sample = _blob_check(
    contacts_archive, "contacts_blob_sample", _mailbox_id, "contacts"
)
teams_manifest_chain = _chain_check(teams_archive, "teams_manifest_chain", _same_key, "teams")
teams_blob_sample = _blob_check(teams_archive, "teams_blob_sample", _same_key, "teams")

ARCHIVE_INTEGRITY_CHECKS = [
    mailbox_manifest_chain,
    mailbox_blob_sample,
    drive_manifest_chain,
    drive_blob_sample,
    calendar_manifest_chain,
    calendar_blob_sample,
    contacts_manifest_chain,
    contacts_blob_sample,
    teams_manifest_chain,
    teams_blob_sample,
]

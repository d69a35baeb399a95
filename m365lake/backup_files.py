"""Run the OneDrive and SharePoint backup for a set of drives, for the CLI and Dagster."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from m365lake.backup import new_run_id
from m365lake.config import GraphSettings
from m365lake.errors import CommitConflictError
from m365lake.graph import GraphClient, GraphStats
from m365lake.lake import Lake, LeaseHeldError
from m365lake.lake.blob_users import DEFAULT_USER_WAIT_SECONDS, blob_user_async
from m365lake.lake.disk_full import raise_if_disk_full
from m365lake.sources.drive_list import Drive, Site, list_drives
from m365lake.sources.drives import (
    CHECKPOINT_FILES,
    DEFAULT_MAX_FILE_SIZE,
    DriveBackupResult,
    backup_drive,
)

log = logging.getLogger(__name__)

CONFLICT_ATTEMPTS = 3
"""Tries of one drive while concurrent runs of the same drive keep committing first."""

DRIVE_CONCURRENCY = 4
"""Drives archived at once by one process."""


@dataclass
class FilesBackupSummary:
    """Outcome of one files backup invocation across its drives."""

    results: list[DriveBackupResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """Drive id → why it was not archived in this invocation (another run has its lease)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Drive id → the error that stopped the drive's run. Its checkpoint commits stay, but
    its deltaLink did not advance, so the next run reads the same changes again."""
    sites: int = 0
    graph: GraphStats | None = None

    def total(self, counter: str) -> int:
        return sum(int(getattr(result, counter)) for result in self.results)


def site_key(site_id: str) -> str:
    return f"files/sites/{site_id}"


SITE_COMMIT_ATTEMPTS = 5


def record_sites(lake: Lake, sites: Sequence[Site], run_id: str) -> None:
    """Commit a ``sites`` row for each site that is new or changed since the last commit.

    Concurrent backups list the same sites. The one that commits second gets a conflict,
    reads the state again and usually finds nothing left to record.
    """
    for attempt in range(1, SITE_COMMIT_ATTEMPTS + 1):
        with lake.begin(run_id=run_id, kind="sites", container=None) as tx:
            # The state is read after the transaction starts, so a commit by another
            # writer in between is caught at commit time.
            changed = [site for site in sites if lake.state(site_key(site.site_id)) != site.row()]
            if not changed:
                return
            tx.write_rows("sites", [site.row() for site in changed], partition={})
            for site in changed:
                tx.set_state(site_key(site.site_id), site.row())
            try:
                tx.commit(counts={"sites": len(changed)})
                return
            except CommitConflictError:
                if attempt == SITE_COMMIT_ATTEMPTS:
                    raise
                log.info("site list committed concurrently; reading it again")


async def _backup_one(
    graph: GraphClient,
    lake: Lake,
    drive: Drive,
    gate: asyncio.Semaphore,
    max_file_size: int,
    checkpoint_files: int,
) -> DriveBackupResult:
    async with gate:
        lease = lake.acquire_lease(f"files-{drive.drive_id}", owner=new_run_id())
        renewal = asyncio.ensure_future(lease.keep_renewed())
        try:
            for attempt in range(1, CONFLICT_ATTEMPTS + 1):
                try:
                    return await backup_drive(
                        graph,
                        lake,
                        drive,
                        run_id=new_run_id(),
                        max_file_size=max_file_size,
                        checkpoint_files=checkpoint_files,
                    )
                except CommitConflictError as error:
                    if attempt == CONFLICT_ATTEMPTS:
                        raise
                    log.info("drive %s, attempt %d: %s", drive.drive_id, attempt, error)
            raise AssertionError("unreachable: the last attempt returns or raises")
        finally:
            renewal.cancel()
            await asyncio.to_thread(lease.release)


async def backup_files(
    settings: GraphSettings,
    lake: Lake,
    *,
    drives: Sequence[str] | None = None,
    concurrency: int = DRIVE_CONCURRENCY,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    checkpoint_files: int = CHECKPOINT_FILES,
    blob_wait_seconds: float = DEFAULT_USER_WAIT_SECONDS,
) -> FilesBackupSummary:
    """Archive the given drives (default: every OneDrive and site library in the tenant).

    ``drives`` lists drive ids; an id the tenant does not list is reported in ``failed``.
    Files larger than ``max_file_size`` bytes are recorded as ``fileTooLarge`` failures.
    Each drive's run also commits every ``checkpoint_files`` versions it writes. A purge
    deleting blobs makes the run wait up to ``blob_wait_seconds`` before it starts.
    """
    summary = FilesBackupSummary()
    # A blob user for the whole run, as in ``backup_mail``.
    async with (
        blob_user_async(
            lake.storage, owner=f"files backup {new_run_id()}", wait_seconds=blob_wait_seconds
        ),
        GraphClient(settings) as graph,
    ):
        found, sites = await list_drives(graph)
        summary.sites = len(sites)
        try:
            await asyncio.to_thread(record_sites, lake, sites, new_run_id())
        except OSError as error:
            raise_if_disk_full(lake.local_dir, [error], "site lists")
            raise
        selected = found
        if drives:
            by_id = {drive.drive_id: drive for drive in found}
            selected = [by_id[drive_id] for drive_id in drives if drive_id in by_id]
            for drive_id in drives:
                if drive_id not in by_id:
                    summary.failed[drive_id] = (
                        "no such drive among the tenant's OneDrives and site libraries"
                    )
        gate = asyncio.Semaphore(concurrency)
        outcomes = await asyncio.gather(
            *(
                _backup_one(graph, lake, drive, gate, max_file_size, checkpoint_files)
                for drive in selected
            ),
            return_exceptions=True,
        )
        summary.graph = graph.stats
    for drive, outcome in zip(selected, outcomes, strict=True):
        if isinstance(outcome, LeaseHeldError):
            log.info("drive %s skipped: %s", drive.drive_id, outcome)
            summary.skipped[drive.drive_id] = f"already being archived: {outcome}"
        elif isinstance(outcome, BaseException):
            log.error(
                "drive %s failed; its delta token was not advanced: %s", drive.drive_id, outcome
            )
            summary.failed[drive.drive_id] = f"{type(outcome).__name__}: {outcome}"
        else:
            summary.results.append(outcome)
    raise_if_disk_full(lake.local_dir, outcomes, "drives")
    return summary

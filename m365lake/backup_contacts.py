"""Run the contacts backup for a set of mailboxes: the call behind the CLI and Dagster."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from m365lake.backup import MAILBOX_CONCURRENCY, new_run_id
from m365lake.catalog import connect
from m365lake.config import GraphSettings
from m365lake.errors import CommitConflictError, ItemNotFoundError, MailboxNotEnabledError
from m365lake.graph import GraphClient, GraphStats
from m365lake.lake import Lake, LeaseHeldError
from m365lake.lake.blob_users import DEFAULT_USER_WAIT_SECONDS, blob_user_async
from m365lake.lake.disk_full import raise_if_disk_full
from m365lake.sources.contacts import ContactsBackupResult, backup_contacts_of
from m365lake.sources.mailboxes import Mailbox, get_mailbox, list_mailboxes

log = logging.getLogger(__name__)

CONFLICT_ATTEMPTS = 3
"""Tries of one mailbox while concurrent runs of the same mailbox keep committing first."""


def contact_totals(lake: Lake, mailbox_id: str) -> dict[str, int]:
    """Return the live contacts, archived contact versions and their JSON bytes of a mailbox.

    Reads the catalog, so refresh it after a commit first.
    """
    with connect(lake) as db:
        live = db.execute(
            "SELECT count(*) FROM contacts WHERE mailbox_id = ?", [mailbox_id]
        ).fetchone()
        versions = db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM contact_versions WHERE mailbox_id = ?",
            [mailbox_id],
        ).fetchone()
    assert live is not None and versions is not None
    return {
        "live_contacts": int(live[0]),
        "contact_versions": int(versions[0]),
        "contact_version_bytes": int(versions[1]),
    }


def lease_name(mailbox_id: str) -> str:
    """Return the lease that lets one contacts run at a time work on a mailbox."""
    return f"contacts-{mailbox_id}"


@dataclass
class ContactsBackupSummary:
    """Outcome of one contacts backup invocation across its mailboxes."""

    results: list[ContactsBackupResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """User principal name → why there was nothing to archive."""
    failed: dict[str, str] = field(default_factory=dict)
    """User principal name → the error that stopped the mailbox; nothing was committed."""
    graph: GraphStats | None = None

    def total(self, counter: str) -> int:
        return sum(int(getattr(result, counter)) for result in self.results)


async def _backup_one(
    graph: GraphClient, lake: Lake, mailbox: Mailbox, gate: asyncio.Semaphore
) -> ContactsBackupResult:
    async with gate:
        lease = lake.acquire_lease(lease_name(mailbox.mailbox_id), owner=new_run_id())
        renewal = asyncio.ensure_future(lease.keep_renewed())
        try:
            for attempt in range(1, CONFLICT_ATTEMPTS + 1):
                try:
                    return await backup_contacts_of(graph, lake, mailbox, run_id=new_run_id())
                except CommitConflictError as error:
                    if attempt == CONFLICT_ATTEMPTS:
                        raise
                    log.info(
                        "contacts of %s, attempt %d: %s",
                        mailbox.user_principal_name,
                        attempt,
                        error,
                    )
            raise AssertionError("unreachable: the last attempt returns or raises")
        finally:
            renewal.cancel()
            await asyncio.to_thread(lease.release)


async def _resolve(
    graph: GraphClient, users: Sequence[str], summary: ContactsBackupSummary
) -> list[Mailbox]:
    mailboxes = []
    for user in users:
        try:
            mailboxes.append(await get_mailbox(graph, user))
        except ItemNotFoundError:
            summary.failed[user] = (
                "no such user in the directory: check the user principal name or object id"
            )
    return mailboxes


async def backup_contacts(
    settings: GraphSettings,
    lake: Lake,
    *,
    users: Sequence[str] | None = None,
    concurrency: int = MAILBOX_CONCURRENCY,
    blob_wait_seconds: float = DEFAULT_USER_WAIT_SECONDS,
) -> ContactsBackupSummary:
    """Archive the contacts of the given users' mailboxes (default: every mailbox)."""
    summary = ContactsBackupSummary()
    async with (
        blob_user_async(
            lake.storage, owner=f"contacts backup {new_run_id()}", wait_seconds=blob_wait_seconds
        ),
        GraphClient(settings) as graph,
    ):
        mailboxes = await _resolve(graph, users, summary) if users else await list_mailboxes(graph)
        gate = asyncio.Semaphore(concurrency)
        outcomes = await asyncio.gather(
            *(_backup_one(graph, lake, mailbox, gate) for mailbox in mailboxes),
            return_exceptions=True,
        )
        summary.graph = graph.stats
    for mailbox, outcome in zip(mailboxes, outcomes, strict=True):
        upn = mailbox.user_principal_name
        if isinstance(outcome, LeaseHeldError):
            log.info("contacts of %s skipped: %s", upn, outcome)
            summary.skipped[upn] = f"already being archived: {outcome}"
        elif isinstance(outcome, MailboxNotEnabledError):
            log.info("contacts of %s skipped: no Exchange Online mailbox", upn)
            summary.skipped[upn] = "the user has no Exchange Online mailbox"
        elif isinstance(outcome, BaseException):
            log.error("contacts of %s failed, nothing committed for them: %s", upn, outcome)
            summary.failed[upn] = f"{type(outcome).__name__}: {outcome}"
        else:
            summary.results.append(outcome)
    raise_if_disk_full(lake.root, outcomes, "mailboxes")
    return summary

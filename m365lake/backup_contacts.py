"""Run the contacts backup for a set of mailboxes: the call behind the CLI and Dagster."""

from __future__ import annotations

from collections.abc import Sequence

from m365lake.backup import MAILBOX_CONCURRENCY
from m365lake.catalog import connect
from m365lake.config import GraphSettings
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.lake.blob_users import DEFAULT_USER_WAIT_SECONDS
from m365lake.mailbox_runs import MailboxRunSummary, run_mailboxes
from m365lake.mailbox_runs import lease_name as workload_lease_name
from m365lake.sources.contacts import ContactsBackupResult, backup_contacts_of
from m365lake.sources.mailboxes import Mailbox

WORKLOAD = "contacts"

ContactsBackupSummary = MailboxRunSummary[ContactsBackupResult]


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
    return workload_lease_name(WORKLOAD, mailbox_id)


async def _archive(
    graph: GraphClient, lake: Lake, mailbox: Mailbox, run_id: str
) -> ContactsBackupResult:
    return await backup_contacts_of(graph, lake, mailbox, run_id=run_id)


async def backup_contacts(
    settings: GraphSettings,
    lake: Lake,
    *,
    users: Sequence[str] | None = None,
    concurrency: int = MAILBOX_CONCURRENCY,
    blob_wait_seconds: float = DEFAULT_USER_WAIT_SECONDS,
) -> ContactsBackupSummary:
    """Archive the contacts of the given users' mailboxes (default: every mailbox)."""
    return await run_mailboxes(
        settings,
        lake,
        WORKLOAD,
        _archive,
        users=users,
        concurrency=concurrency,
        blob_wait_seconds=blob_wait_seconds,
    )

"""Run the calendar backup for a set of mailboxes: the call behind the CLI and Dagster."""

from __future__ import annotations

from collections.abc import Sequence

from m365lake.backup import MAILBOX_CONCURRENCY
from m365lake.config import GraphSettings
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.lake.blob_users import DEFAULT_USER_WAIT_SECONDS
from m365lake.mailbox_runs import MailboxRunSummary, run_mailboxes
from m365lake.mailbox_runs import lease_name as workload_lease_name
from m365lake.sources.calendar import CalendarBackupResult, backup_calendars_of
from m365lake.sources.mailboxes import Mailbox

WORKLOAD = "calendar"

CalendarBackupSummary = MailboxRunSummary[CalendarBackupResult]


def lease_name(mailbox_id: str) -> str:
    """Return the lease that lets one calendar run at a time work on a mailbox."""
    return workload_lease_name(WORKLOAD, mailbox_id)


async def _archive(
    graph: GraphClient, lake: Lake, mailbox: Mailbox, run_id: str
) -> CalendarBackupResult:
    return await backup_calendars_of(graph, lake, mailbox, run_id=run_id)


async def backup_calendars(
    settings: GraphSettings,
    lake: Lake,
    *,
    users: Sequence[str] | None = None,
    concurrency: int = MAILBOX_CONCURRENCY,
    blob_wait_seconds: float = DEFAULT_USER_WAIT_SECONDS,
) -> CalendarBackupSummary:
    """Archive the calendars of the given users' mailboxes (default: every mailbox)."""
    return await run_mailboxes(
        settings,
        lake,
        WORKLOAD,
        _archive,
        users=users,
        concurrency=concurrency,
        blob_wait_seconds=blob_wait_seconds,
    )

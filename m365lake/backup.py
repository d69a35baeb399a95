"""Run the mail backup for a set of mailboxes: the call behind the CLI and the Dagster asset."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from m365lake.config import GraphSettings
from m365lake.errors import MailboxNotEnabledError
from m365lake.graph import GraphClient, GraphStats
from m365lake.lake import Lake
from m365lake.sources.mail import MailboxBackupResult, ProgressCallback, backup_mailbox
from m365lake.sources.mailboxes import Mailbox, get_mailbox, list_mailboxes

log = logging.getLogger(__name__)

MAILBOX_CONCURRENCY = 4
"""Mailboxes archived at once by one process; each also has Graph's 4-request cap."""


def new_run_id() -> str:
    """Return a sortable, unique run id such as ``20261204T201500Z-3f9a1c2e``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass
class BackupSummary:
    """What one backup invocation did across its mailboxes."""

    results: list[MailboxBackupResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """User principal name → why there was nothing to archive (no Exchange Online mailbox)."""
    failed: dict[str, str] = field(default_factory=dict)
    """User principal name → the error that stopped the mailbox's run; nothing was committed."""
    graph: GraphStats | None = None

    def total(self, counter: str) -> int:
        return sum(int(getattr(result, counter)) for result in self.results)


async def _backup_one(
    graph: GraphClient,
    lake: Lake,
    mailbox: Mailbox,
    gate: asyncio.Semaphore,
    progress: ProgressCallback | None,
) -> MailboxBackupResult:
    async with gate:
        return await backup_mailbox(graph, lake, mailbox, run_id=new_run_id(), progress=progress)


async def backup_mail(
    settings: GraphSettings,
    lake: Lake,
    *,
    users: Sequence[str] | None = None,
    concurrency: int = MAILBOX_CONCURRENCY,
    progress: ProgressCallback | None = None,
) -> BackupSummary:
    """Archive the given users' mailboxes (default: every mailbox in the tenant)."""
    summary = BackupSummary()
    async with GraphClient(settings) as graph:
        if users:
            mailboxes = []
            for user in users:
                mailboxes.append(await get_mailbox(graph, user))
        else:
            mailboxes = await list_mailboxes(graph)
        gate = asyncio.Semaphore(concurrency)
        outcomes = await asyncio.gather(
            *(_backup_one(graph, lake, mailbox, gate, progress) for mailbox in mailboxes),
            return_exceptions=True,
        )
        summary.graph = graph.stats
    for mailbox, outcome in zip(mailboxes, outcomes, strict=True):
        upn = mailbox.user_principal_name
        if isinstance(outcome, MailboxNotEnabledError):
            log.info("mailbox %s skipped: no Exchange Online mailbox", upn)
            summary.skipped[upn] = "the user has no Exchange Online mailbox"
        elif isinstance(outcome, BaseException):
            log.error("mailbox %s failed, nothing committed for it: %s", upn, outcome)
            summary.failed[upn] = f"{type(outcome).__name__}: {outcome}"
        else:
            summary.results.append(outcome)
    return summary

"""Run one per-mailbox workload (calendar, contacts) over a set of mailboxes.

Each mailbox runs under its own lease (``<workload>-<mailbox id>``), so two runs of the
same workload never archive one mailbox at once, while mail, calendar and contacts of one
mailbox may run side by side. The whole invocation registers as a blob user, so a purge
never deletes a blob that a run found present and references in a row it commits later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from m365lake.backup import MAILBOX_CONCURRENCY, new_run_id, resolve_users
from m365lake.config import GraphSettings
from m365lake.errors import CommitConflictError, MailboxNotEnabledError
from m365lake.graph import GraphClient, GraphStats
from m365lake.lake import Lake, LeaseHeldError
from m365lake.lake.blob_users import DEFAULT_USER_WAIT_SECONDS, blob_user_async
from m365lake.lake.disk_full import raise_if_disk_full
from m365lake.sources.mailboxes import Mailbox, list_mailboxes

log = logging.getLogger(__name__)

CONFLICT_ATTEMPTS = 3
"""Tries of one mailbox while concurrent runs of the same mailbox keep committing first."""


class _Result(Protocol):
    @property
    def mailbox(self) -> Mailbox: ...


ResultT = TypeVar("ResultT", bound=_Result)

ArchiveMailbox = Callable[[GraphClient, Lake, Mailbox, str], Awaitable[ResultT]]
"""Archive one mailbox's workload as run ``run_id``: ``(graph, lake, mailbox, run_id)``."""


@dataclass
class MailboxRunSummary(Generic[ResultT]):
    """Outcome of one invocation of a per-mailbox workload across its mailboxes."""

    results: list[ResultT] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """User principal name → why there was nothing to archive."""
    failed: dict[str, str] = field(default_factory=dict)
    """User principal name → the error that stopped the mailbox; nothing was committed."""
    graph: GraphStats | None = None

    def total(self, counter: str) -> int:
        return sum(int(getattr(result, counter)) for result in self.results)


def lease_name(workload: str, mailbox_id: str) -> str:
    """Return the lease that lets one run of ``workload`` at a time work on a mailbox."""
    return f"{workload}-{mailbox_id}"


async def _run_one(
    workload: str,
    archive: ArchiveMailbox[ResultT],
    graph: GraphClient,
    lake: Lake,
    mailbox: Mailbox,
    gate: asyncio.Semaphore,
) -> ResultT:
    async with gate:
        lease = lake.acquire_lease(lease_name(workload, mailbox.mailbox_id), owner=new_run_id())
        renewal = asyncio.ensure_future(lease.keep_renewed())
        try:
            for attempt in range(1, CONFLICT_ATTEMPTS + 1):
                try:
                    return await archive(graph, lake, mailbox, new_run_id())
                except CommitConflictError as error:
                    if attempt == CONFLICT_ATTEMPTS:
                        raise
                    # A writer that ignored the lease committed this mailbox meanwhile.
                    # The rerun is incremental from that commit.
                    log.info(
                        "%s of %s, attempt %d: %s",
                        workload,
                        mailbox.user_principal_name,
                        attempt,
                        error,
                    )
            raise AssertionError("unreachable: the last attempt returns or raises")
        finally:
            renewal.cancel()
            await asyncio.to_thread(lease.release)


async def run_mailboxes(
    settings: GraphSettings,
    lake: Lake,
    workload: str,
    archive: ArchiveMailbox[ResultT],
    *,
    users: Sequence[str] | None = None,
    concurrency: int = MAILBOX_CONCURRENCY,
    blob_wait_seconds: float = DEFAULT_USER_WAIT_SECONDS,
) -> MailboxRunSummary[ResultT]:
    """Archive ``workload`` of the given users' mailboxes (default: every mailbox).

    A user who left the directory but whose mailbox is archived is skipped, as mail
    backups skip them, and an unknown user is a failure that names the fix.
    """
    summary: MailboxRunSummary[ResultT] = MailboxRunSummary()
    async with (
        blob_user_async(
            lake.storage, owner=f"{workload} backup {new_run_id()}", wait_seconds=blob_wait_seconds
        ),
        GraphClient(settings) as graph,
    ):
        if users:
            mailboxes = await resolve_users(graph, lake, users, summary.skipped, summary.failed)
        else:
            mailboxes = await list_mailboxes(graph)
        gate = asyncio.Semaphore(concurrency)
        outcomes = await asyncio.gather(
            *(_run_one(workload, archive, graph, lake, mailbox, gate) for mailbox in mailboxes),
            return_exceptions=True,
        )
        summary.graph = graph.stats
    for mailbox, outcome in zip(mailboxes, outcomes, strict=True):
        upn = mailbox.user_principal_name
        if isinstance(outcome, LeaseHeldError):
            log.info("%s of %s skipped: %s", workload, upn, outcome)
            summary.skipped[upn] = f"already being archived: {outcome}"
        elif isinstance(outcome, MailboxNotEnabledError):
            log.info("%s of %s skipped: no Exchange Online mailbox", workload, upn)
            summary.skipped[upn] = "the user has no Exchange Online mailbox"
        elif isinstance(outcome, BaseException):
            log.error("%s of %s failed, nothing committed for it: %s", workload, upn, outcome)
            summary.failed[upn] = f"{type(outcome).__name__}: {outcome}"
        else:
            summary.results.append(outcome)
    raise_if_disk_full(lake.local_dir, outcomes, "mailboxes")
    return summary

"""Run the mail backup for a set of mailboxes: the call behind the CLI and the Dagster asset."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from m365lake.config import GraphSettings
from m365lake.discovery.lake_rows import latest_rows
from m365lake.errors import CommitConflictError, ItemNotFoundError, MailboxNotEnabledError
from m365lake.graph import GraphClient, GraphStats
from m365lake.lake import Lake, LeaseHeldError
from m365lake.lake.blob_users import DEFAULT_USER_WAIT_SECONDS, blob_user_async
from m365lake.lake.disk_full import raise_if_disk_full
from m365lake.sources.mail import (
    CHECKPOINT_MESSAGES,
    MailboxBackupResult,
    ProgressCallback,
    backup_mailbox,
)
from m365lake.sources.mailboxes import Mailbox, get_mailbox, list_mailboxes

log = logging.getLogger(__name__)

CONFLICT_ATTEMPTS = 3
"""Tries of one mailbox while concurrent runs of the same mailbox keep committing first."""

MAILBOX_CONCURRENCY = 4
"""Mailboxes archived at once by one process; each also has Graph's 4-request cap."""


def new_run_id() -> str:
    """Return a sortable, unique run id such as ``20261204T201500Z-3f9a1c2e``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class BackupProgress:
    """A snapshot of a running backup, for progress lines."""

    mailboxes_total: int
    mailboxes_done: int
    messages: int
    bytes_downloaded: int
    failures: int
    throttled: int
    throttle_wait_seconds: float

    def describe(self) -> str:
        return (
            f"{self.mailboxes_done}/{self.mailboxes_total} mailboxes done, "
            f"{self.messages:,} messages ({self.bytes_downloaded / 1e6:,.1f} MB) archived, "
            f"{self.failures} failures, throttled {self.throttled} times "
            f"({self.throttle_wait_seconds:,.1f} s waited)"
        )


HeartbeatCallback = Callable[[BackupProgress], None]


@dataclass
class BackupSummary:
    """Outcome of one backup invocation across its mailboxes."""

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
    checkpoint_messages: int,
) -> MailboxBackupResult:
    async with gate:
        lease = lake.acquire_lease(f"mail-{mailbox.mailbox_id}", owner=new_run_id())
        renewal = asyncio.ensure_future(lease.keep_renewed())
        try:
            for attempt in range(1, CONFLICT_ATTEMPTS + 1):
                try:
                    return await backup_mailbox(
                        graph,
                        lake,
                        mailbox,
                        run_id=new_run_id(),
                        progress=progress,
                        checkpoint_messages=checkpoint_messages,
                    )
                except CommitConflictError as error:
                    if attempt == CONFLICT_ATTEMPTS:
                        raise
                    # A writer that ignored the lease committed this mailbox meanwhile.
                    # The rerun is incremental from that commit, so it is cheap.
                    log.info(
                        "mailbox %s, attempt %d: %s", mailbox.user_principal_name, attempt, error
                    )
            raise AssertionError("unreachable: the last attempt returns or raises")
        finally:
            renewal.cancel()
            await asyncio.to_thread(lease.release)


def _archived_mailboxes(lake: Lake) -> set[str]:
    """Return the ids and user principal names (lowercased) of every archived mailbox."""
    rows = latest_rows(lake, "mailboxes", ["mailbox_id"], ["mailbox_id", "user_principal_name"])
    return {
        str(value).lower()
        for row in rows
        for value in (row["mailbox_id"], row["user_principal_name"])
        if value
    }


async def resolve_users(
    graph: GraphClient,
    lake: Lake,
    users: Sequence[str],
    skipped: dict[str, str],
    failed: dict[str, str],
) -> list[Mailbox]:
    """Return the mailboxes of ``users``.

    A user who left the directory but whose mailbox is archived goes into ``skipped``,
    and a user that is neither in the directory nor in the archive into ``failed``.
    """
    mailboxes = []
    archived: set[str] | None = None
    for user in users:
        try:
            mailboxes.append(await get_mailbox(graph, user))
        except ItemNotFoundError:
            if archived is None:
                archived = _archived_mailboxes(lake)
            if user.lower() in archived:
                # A leaver: the directory dropped the user, and the archive stays as it is.
                log.info("mailbox %s skipped: no longer in the directory", user)
                skipped[user] = (
                    "the user is no longer in the directory; the archived mailbox is kept"
                )
            else:
                failed[user] = (
                    "no such user in the directory: check the user principal name or object id"
                )
    return mailboxes


async def _heartbeat(
    graph: GraphClient,
    live: dict[str, MailboxBackupResult],
    total: int,
    done: Callable[[], int],
    callback: HeartbeatCallback,
    interval: float,
) -> None:
    while True:
        await asyncio.sleep(interval)
        callback(
            BackupProgress(
                mailboxes_total=total,
                mailboxes_done=done(),
                messages=sum(r.messages_new + r.messages_updated for r in live.values()),
                bytes_downloaded=sum(r.bytes_downloaded for r in live.values()),
                failures=sum(r.failures for r in live.values()),
                throttled=graph.stats.throttled,
                throttle_wait_seconds=graph.stats.throttle_wait_seconds,
            )
        )


async def backup_mail(
    settings: GraphSettings,
    lake: Lake,
    *,
    users: Sequence[str] | None = None,
    concurrency: int = MAILBOX_CONCURRENCY,
    progress: ProgressCallback | None = None,
    heartbeat: HeartbeatCallback | None = None,
    heartbeat_seconds: float = 10.0,
    checkpoint_messages: int = CHECKPOINT_MESSAGES,
    blob_wait_seconds: float = DEFAULT_USER_WAIT_SECONDS,
) -> BackupSummary:
    """Archive the given users' mailboxes (default: every mailbox in the tenant).

    ``heartbeat`` receives a snapshot every ``heartbeat_seconds`` while mailboxes run,
    so long downloads and throttling waits are visible. A purge deleting blobs makes the
    run wait up to ``blob_wait_seconds`` before it starts (BlobsInUseError after that).
    """
    summary = BackupSummary()
    live: dict[str, MailboxBackupResult] = {}

    def track(result: MailboxBackupResult) -> None:
        live[result.mailbox.mailbox_id] = result
        if progress:
            progress(result)

    # Registered as a blob user for the whole run: a purge then never deletes a blob
    # that this run found present and references in a row it commits later.
    async with (
        blob_user_async(
            lake.storage, owner=f"mail backup {new_run_id()}", wait_seconds=blob_wait_seconds
        ),
        GraphClient(settings) as graph,
    ):
        if users:
            mailboxes = await resolve_users(graph, lake, users, summary.skipped, summary.failed)
        else:
            mailboxes = await list_mailboxes(graph)
        gate = asyncio.Semaphore(concurrency)
        tasks = [
            asyncio.ensure_future(
                _backup_one(graph, lake, mailbox, gate, track, checkpoint_messages)
            )
            for mailbox in mailboxes
        ]
        ticker = None
        if heartbeat and tasks:
            ticker = asyncio.ensure_future(
                _heartbeat(
                    graph,
                    live,
                    len(tasks),
                    lambda: sum(task.done() for task in tasks),
                    heartbeat,
                    heartbeat_seconds,
                )
            )
        try:
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            if ticker:
                ticker.cancel()
        summary.graph = graph.stats
    for mailbox, outcome in zip(mailboxes, outcomes, strict=True):
        upn = mailbox.user_principal_name
        if isinstance(outcome, LeaseHeldError):
            log.info("mailbox %s skipped: %s", upn, outcome)
            summary.skipped[upn] = f"already being archived: {outcome}"
        elif isinstance(outcome, MailboxNotEnabledError):
            # Users with a mail address but no Exchange Online licence are common
            # (shared accounts, leavers): there is nothing to archive.
            log.info("mailbox %s skipped: no Exchange Online mailbox", upn)
            summary.skipped[upn] = "the user has no Exchange Online mailbox"
        elif isinstance(outcome, BaseException):
            log.error("mailbox %s failed, nothing committed for it: %s", upn, outcome)
            summary.failed[upn] = f"{type(outcome).__name__}: {outcome}"
        else:
            summary.results.append(outcome)
    raise_if_disk_full(lake.local_dir, outcomes, "mailboxes")
    return summary

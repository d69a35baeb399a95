"""Incremental backup of one Exchange Online mailbox into the lake.

One run walks the folder hierarchy with folder delta, then every folder with message
delta, and downloads the MIME of each new or changed message. Rows and the delta
tokens that cover them are committed together: at the end of the run, and on a large
mailbox also at checkpoints between folders. A run that dies leaves only whole
commits visible, so the next run continues from the last committed tokens and ends
with exactly the state a clean run would have.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from m365lake.errors import (
    GraphError,
    ItemNotFoundError,
    SyncStateExpiredError,
)
from m365lake.graph import GraphClient
from m365lake.lake import Lake, Transaction
from m365lake.sources import mail_rows
from m365lake.sources.mail_state import KnownFolder, MailboxState, load_mailbox_state
from m365lake.sources.mailboxes import Mailbox
from m365lake.sources.mime import list_attachments
from m365lake.sources.rows import error_reason, failure_from_error, now_utc

log = logging.getLogger(__name__)

DELTA_PAGE_SIZE = 100
"""Messages per delta page (``Prefer: odata.maxpagesize``). Graph's default is 10."""

# Immutable ids survive moves between folders, so a move is one message with a new
# folder rather than a delete plus an unrelated create.
ID_TYPE_PREFERENCE = 'IdType="ImmutableId"'

PROGRESS_EVERY = 500
"""Messages between two progress callbacks."""

CHECKPOINT_MESSAGES = 5_000
"""Messages archived before the run commits at the end of the current folder."""

CHECKPOINT_SECONDS = 300.0
"""Time after which the run commits at the end of the current folder."""

MAX_RESYNCS = 3
"""Enumerations started again after a 410, per folder list or folder and run, before the
mailbox is reported as failed. A token can die again during the enumeration that
replaced it, because Outlook has been seen to return 410 for nextLinks mid-round."""


@dataclass
class MailboxBackupResult:
    """Counts of one mailbox run, as committed."""

    mailbox: Mailbox
    run_id: str
    started_at: datetime
    finished_at: datetime | None = None
    commit_seq: int | None = None
    folders: int = 0
    folders_changed: int = 0
    messages_new: int = 0
    messages_updated: int = 0
    messages_deleted: int = 0
    messages_unchanged_replays: int = 0
    failures: int = 0
    resyncs: int = 0
    bytes_downloaded: int = 0
    blobs_written: int = 0
    pending_retries: int = 0
    commits: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "folders": self.folders,
            "folders_changed": self.folders_changed,
            "messages_new": self.messages_new,
            "messages_updated": self.messages_updated,
            "messages_deleted": self.messages_deleted,
            "failures": self.failures,
            "resyncs": self.resyncs,
            "bytes_downloaded": self.bytes_downloaded,
            "blobs_written": self.blobs_written,
        }


ProgressCallback = Callable[[MailboxBackupResult], None]


def folders_delta_key(mailbox_id: str) -> str:
    return f"mail/{mailbox_id}/folders/delta"


def messages_delta_key(mailbox_id: str, folder_id: str) -> str:
    return f"mail/{mailbox_id}/messages/{folder_id}/delta"


def mailbox_key(mailbox_id: str) -> str:
    return f"mail/{mailbox_id}/directory"


def pending_key(mailbox_id: str) -> str:
    return f"mail/{mailbox_id}/pending"


def tombstones_key(mailbox_id: str) -> str:
    return f"mail/{mailbox_id}/tombstones"


@dataclass
class _FolderTree:
    """Live folders of the mailbox after this run's folder delta."""

    folders: dict[str, KnownFolder] = field(default_factory=dict)

    def path(self, folder_id: str) -> str:
        names: list[str] = []
        current: str | None = folder_id
        visited: set[str] = set()
        # A parent outside the map (msgfolderroot) ends the walk. The visited set
        # guards against a cycle in a corrupt hierarchy.
        while current in self.folders and current not in visited:
            visited.add(current)
            folder = self.folders[current]
            names.append(folder.display_name)
            current = folder.parent_folder_id
        return "/".join(reversed(names))


class _MailboxRun:
    def __init__(
        self,
        graph: GraphClient,
        lake: Lake,
        tx: Transaction,
        mailbox: Mailbox,
        state: MailboxState,
        result: MailboxBackupResult,
        *,
        fetch_concurrency: int,
        progress: ProgressCallback | None,
        checkpoint_messages: int,
    ) -> None:
        self.graph = graph
        self.lake = lake
        self.tx = tx
        self.mailbox = mailbox
        self.state = state
        self.result = result
        self.fetch_concurrency = fetch_concurrency
        self.progress = progress
        self.partition = {"mailbox_id": mailbox.mailbox_id}
        self.tree = _FolderTree()
        self.deleted_folders: set[str] = set()
        self.captured: dict[str, str] = {}
        """Message id → folder id of the version written by this run."""
        self.alive: dict[str, str] = {}
        """Message id → folder where this run last saw the message alive."""
        self.tombstones: list[tuple[str, str]] = []
        self.pending: dict[str, str] = {}
        """Message id → folder id of messages to retry in the next run."""
        self._since_progress = 0
        self.checkpoint_messages = checkpoint_messages
        self._since_checkpoint = 0
        self._checkpoint_clock = time.monotonic()

    @property
    def headers(self) -> dict[str, str]:
        return {"Prefer": f"odata.maxpagesize={DELTA_PAGE_SIZE}, {ID_TYPE_PREFERENCE}"}

    @property
    def user_path(self) -> str:
        return f"/users/{self.mailbox.mailbox_id}"

    def saved_link(self, key: str) -> str | None:
        """Return the committed delta link for ``key`` if it targets the configured Graph host."""
        link = self.lake.state(key)
        if link is None:
            return None
        endpoint = urlsplit(self.graph.settings.graph_url)
        target = urlsplit(link)
        if (target.scheme, target.netloc) != (endpoint.scheme, endpoint.netloc):
            # Links are followed verbatim, so one saved against another endpoint
            # (the Graph URL was changed since) would leak the token to that host.
            log.warning(
                "saved delta link for %s points at %s, not the configured %s; enumerating again",
                self.mailbox.user_principal_name,
                target.netloc,
                endpoint.netloc,
            )
            return None
        return str(link)

    async def execute(self) -> None:
        if self.progress:
            self.progress(self.result)
        mailbox_id = self.mailbox.mailbox_id
        previous_pending = self.lake.state(pending_key(mailbox_id)) or {}
        # Tombstones that an interrupted run committed with their folder's token.
        for folder_id, message_id in self.lake.state(tombstones_key(mailbox_id)) or []:
            self.tombstones.append((folder_id, message_id))
        await self.sync_folders()
        for folder_id in sorted(self.tree.folders):
            await self.sync_messages(folder_id)
            if self._checkpoint_due():
                self.checkpoint()
        await self.retry_pending(previous_pending)
        self.record_deletions()
        self.tombstones.clear()
        self._save_run_state()
        self.result.pending_retries = len(self.pending)

    def _checkpoint_due(self) -> bool:
        return self._since_checkpoint >= self.checkpoint_messages or (
            self._since_checkpoint > 0
            and time.monotonic() - self._checkpoint_clock >= CHECKPOINT_SECONDS
        )

    def _save_run_state(self) -> None:
        mailbox_id = self.mailbox.mailbox_id
        self.tx.set_state(pending_key(mailbox_id), self.pending or None)
        # Deletions wait for the end of the run, because a tombstone in one folder
        # may be a move whose other half comes from a folder not yet read.
        self.tx.set_state(
            tombstones_key(mailbox_id), [list(pair) for pair in self.tombstones] or None
        )

    def checkpoint(self) -> None:
        """Commit what the run has archived so far, with the tokens that cover it."""
        self._save_run_state()
        manifest = self.tx.commit(counts=self.result.counts())
        self.result.commit_seq = manifest.get("seq")
        self.result.commits += 1
        log.info(
            "mailbox %s: checkpoint commit %s after %d messages",
            self.mailbox.user_principal_name,
            self.result.commit_seq,
            self._since_checkpoint,
        )
        self.tx = self.lake.begin(
            run_id=self.result.run_id, kind="mail", container=self.mailbox.mailbox_id
        )
        self._since_checkpoint = 0
        self._checkpoint_clock = time.monotonic()

    def finish(self) -> dict[str, Any]:
        """Write the mailbox's directory entry and run row, and make the final commit."""
        self.result.finished_at = now_utc()
        mailbox_id = self.mailbox.mailbox_id
        directory_entry = self.mailbox.row()
        if self.lake.state(mailbox_key(mailbox_id)) != directory_entry:
            self.tx.write_rows(
                "mailboxes",
                [
                    {
                        **directory_entry,
                        "captured_at": self.result.finished_at,
                        "run_id": self.result.run_id,
                    }
                ],
                partition={},
            )
            self.tx.set_state(mailbox_key(mailbox_id), directory_entry)
        self.tx.write_rows("runs", [_run_row(self.result)], partition={})
        manifest = self.tx.commit(counts=self.result.counts())
        self.result.commit_seq = manifest.get("seq")
        self.result.commits += 1
        return manifest

    # ---- folders -------------------------------------------------------------------

    async def _read_delta(
        self, url: str, params: dict[str, str] | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        items: list[dict[str, Any]] = []
        delta_link = None
        async for page in self.graph.delta(
            url, params=params, headers=self.headers, mailbox=self.mailbox.mailbox_id
        ):
            items.extend(page.items)
            if page.delta_link:
                delta_link = page.delta_link
        return items, delta_link

    async def sync_folders(self) -> None:
        key = folders_delta_key(self.mailbox.mailbox_id)
        initial = f"{self.user_path}/mailFolders/delta"
        link = self.saved_link(key)
        full = link is None
        url = link or initial
        for restarts in range(MAX_RESYNCS + 1):
            try:
                items, delta_link = await self._read_delta(url, None)
                break
            except SyncStateExpiredError:
                if restarts == MAX_RESYNCS:
                    raise
                log.info(
                    "folder delta token expired for %s; listing all folders again",
                    self.mailbox.user_principal_name,
                )
                self.result.resyncs += 1
                full, url = True, initial

        known_live = {fid: f for fid, f in self.state.folders.items() if not f.deleted}
        current: dict[str, KnownFolder] = {} if full else dict(known_live)
        for item in items:
            if "@removed" in item:
                current.pop(item["id"], None)
                continue
            current[item["id"]] = KnownFolder(
                item.get("parentFolderId"), item.get("displayName") or "", False
            )
        self.tree.folders = current
        self.deleted_folders = set(known_live) - set(current)
        for folder_id in self.deleted_folders:
            self.tx.set_state(messages_delta_key(self.mailbox.mailbox_id, folder_id), None)
        self._write_folder_rows(known_live)
        self.result.folders = len(current)
        self.tx.set_state(key, delta_link)

    def _write_folder_rows(self, known_live: dict[str, KnownFolder]) -> None:
        old_tree = _FolderTree(dict(known_live))
        rows = []
        for folder_id, folder in self.tree.folders.items():
            path = self.tree.path(folder_id)
            before = known_live.get(folder_id)
            if before and before == folder and old_tree.path(folder_id) == path:
                continue
            rows.append(
                mail_rows.folder_row(
                    mailbox=self.mailbox,
                    folder_id=folder_id,
                    parent_folder_id=folder.parent_folder_id,
                    display_name=folder.display_name,
                    folder_path=path,
                    change="updated" if before else "created",
                    run_id=self.result.run_id,
                )
            )
        for folder_id in sorted(self.deleted_folders):
            folder = known_live[folder_id]
            rows.append(
                mail_rows.folder_row(
                    mailbox=self.mailbox,
                    folder_id=folder_id,
                    parent_folder_id=folder.parent_folder_id,
                    display_name=folder.display_name,
                    folder_path=old_tree.path(folder_id),
                    change="deleted",
                    run_id=self.result.run_id,
                )
            )
        if rows:
            self.tx.write_rows("folders", rows, partition=self.partition)
        self.result.folders_changed = len(rows)

    # ---- messages ------------------------------------------------------------------

    async def sync_messages(self, folder_id: str) -> None:
        key = messages_delta_key(self.mailbox.mailbox_id, folder_id)
        initial = f"{self.user_path}/mailFolders/{folder_id}/messages/delta"
        params = {"$select": mail_rows.MESSAGE_SELECT}
        link = self.saved_link(key)
        seen: set[str] = set()
        url, query = (link, None) if link else (initial, params)
        for restarts in range(MAX_RESYNCS + 1):
            try:
                delta_link = await self._consume_messages(url, query, folder_id, seen)
                break
            except SyncStateExpiredError:
                if restarts == MAX_RESYNCS:
                    raise
                log.info(
                    "message delta token expired for %s folder %s; enumerating it again",
                    self.mailbox.user_principal_name,
                    folder_id,
                )
                self.result.resyncs += 1
                link = None
                seen = set()
                url, query = initial, params
            except ItemNotFoundError as error:
                # The folder was deleted after folder delta listed it; the next folder
                # delta reports it and its messages become deletions then.
                self._record_failure(folder_id, None, "list", "skipped", error)
                return
        if link is None:
            # A full enumeration is the folder's whole truth: archived messages it
            # did not list are gone from this folder.
            for message_id in self.state.live_messages_in(folder_id) - seen:
                self.tombstones.append((folder_id, message_id))
        self.tx.set_state(key, delta_link)

    async def _consume_messages(
        self, url: str, params: dict[str, str] | None, folder_id: str, seen: set[str]
    ) -> str | None:
        delta_link = None
        inflight: set[asyncio.Task[None]] = set()
        try:
            async for page in self.graph.delta(
                url, params=params, headers=self.headers, mailbox=self.mailbox.mailbox_id
            ):
                for item in page.items:
                    task = self._on_delta_item(item, folder_id, seen)
                    if task is None:
                        continue
                    inflight.add(asyncio.create_task(task))
                    if len(inflight) >= self.fetch_concurrency * 2:
                        _, inflight = await asyncio.wait(
                            inflight, return_when=asyncio.FIRST_COMPLETED
                        )
                if page.delta_link:
                    delta_link = page.delta_link
        finally:
            if inflight:
                await asyncio.gather(*inflight)
        return delta_link

    def _on_delta_item(self, item: dict[str, Any], folder_id: str, seen: set[str]) -> Any:
        message_id = item["id"]
        if "@removed" in item:
            if self.alive.get(message_id) == folder_id:
                del self.alive[message_id]
            self.tombstones.append((folder_id, message_id))
            return None
        seen.add(message_id)
        self.alive[message_id] = folder_id
        change_key = item.get("changeKey")
        if self.captured.get(message_id) == folder_id:
            # Delta replays an item it already sent in this run.
            self.result.messages_unchanged_replays += 1
            return None
        known = self.state.messages.get(message_id)
        if (
            known is not None
            and not known.deleted
            and known.change_key == change_key
            and known.folder_id == folder_id
        ):
            self.result.messages_unchanged_replays += 1
            return None
        change = "updated" if known is not None and not known.deleted else "created"
        self.captured[message_id] = folder_id
        return self._capture(item, folder_id, change)

    async def _capture(self, message: dict[str, Any], folder_id: str, change: str) -> None:
        message_id = message["id"]
        url = f"{self.user_path}/messages/{message_id}/$value"
        try:
            mime = await self.graph.get_bytes(
                url, headers={"Prefer": ID_TYPE_PREFERENCE}, mailbox=self.mailbox.mailbox_id
            )
        except ItemNotFoundError as error:
            # Deleted between listing and download: the next delta brings its tombstone.
            self.captured.pop(message_id, None)
            self._record_failure(folder_id, message_id, "fetch", "skipped", error)
            return
        except GraphError as error:
            self.captured.pop(message_id, None)
            self.pending[message_id] = folder_id
            self._record_failure(folder_id, message_id, "fetch", "failed", error)
            return
        self._store(message, mime, folder_id, change)

    def _store(self, message: dict[str, Any], mime: bytes, folder_id: str, change: str) -> None:
        message_id = message["id"]
        content = self.lake.store_content(mime)
        new_blob = content.created

        try:
            attachments = list_attachments(mime)
        except Exception as error:
            attachments = []
            self._record_failure(folder_id, message_id, "parse", "skipped", error)
            attachment_count = None
        else:
            attachment_count = len(attachments)

        row = mail_rows.message_row(
            mailbox=self.mailbox,
            message=message,
            folder_id=folder_id,
            folder_path=self.tree.path(folder_id),
            change=change,
            run_id=self.result.run_id,
            content=content,
            attachment_count=attachment_count,
        )
        self.tx.write_rows("messages", [row], partition=self.partition)
        if attachments:
            self.tx.write_rows(
                "attachments",
                mail_rows.attachment_rows(
                    mailbox=self.mailbox,
                    message_id=message_id,
                    mime_sha256=content.sha256,
                    run_id=self.result.run_id,
                    attachments=attachments,
                ),
                partition=self.partition,
            )

        self.captured[message_id] = folder_id
        self.pending.pop(message_id, None)
        self.result.bytes_downloaded += len(mime)
        self.result.blobs_written += int(new_blob)
        if change == "created":
            self.result.messages_new += 1
        else:
            self.result.messages_updated += 1
        self._since_progress += 1
        self._since_checkpoint += 1
        if self.progress and self._since_progress >= PROGRESS_EVERY:
            self._since_progress = 0
            self.progress(self.result)

    async def retry_pending(self, previous: dict[str, str]) -> None:
        """Fetch again the messages whose download failed in an earlier run."""
        for message_id, folder_id in sorted(previous.items()):
            if message_id in self.captured or message_id in self.alive:
                continue
            if folder_id not in self.tree.folders:
                continue
            try:
                message = await self.graph.get_json(
                    f"{self.user_path}/messages/{message_id}",
                    params={"$select": mail_rows.MESSAGE_SELECT},
                    headers={"Prefer": ID_TYPE_PREFERENCE},
                    mailbox=self.mailbox.mailbox_id,
                )
            except ItemNotFoundError as error:
                self._record_failure(folder_id, message_id, "retry", "skipped", error)
                continue
            except GraphError as error:
                self.pending[message_id] = folder_id
                self._record_failure(folder_id, message_id, "retry", "failed", error)
                continue
            current_folder = message.get("parentFolderId") or folder_id
            known = self.state.messages.get(message_id)
            change = "updated" if known is not None and not known.deleted else "created"
            self.alive[message_id] = current_folder
            self.captured[message_id] = current_folder
            await self._capture(message, current_folder, change)

    # ---- deletions -----------------------------------------------------------------

    def _last_folder(self, message_id: str) -> str | None:
        if message_id in self.captured:
            return self.captured[message_id]
        known = self.state.messages.get(message_id)
        if known is None or known.deleted:
            return None
        return known.folder_id

    def record_deletions(self) -> None:
        gone: dict[str, str] = {}
        for folder_id, message_id in self.tombstones:
            if message_id in self.alive or message_id in gone:
                continue
            if self._last_folder(message_id) == folder_id:
                gone[message_id] = folder_id
        # Messages whose folder is gone, including folders that an interrupted run
        # already recorded as deleted.
        for message_id, known in self.state.messages.items():
            if known.deleted or message_id in self.alive or message_id in gone:
                continue
            last_folder = self._last_folder(message_id)
            if last_folder is not None and last_folder not in self.tree.folders:
                gone[message_id] = last_folder
        rows = []
        for message_id, folder_id in sorted(gone.items()):
            path = self.tree.path(folder_id) if folder_id in self.tree.folders else None
            rows.append(
                mail_rows.deletion_row(
                    mailbox=self.mailbox,
                    message_id=message_id,
                    folder_id=folder_id,
                    folder_path=path,
                    run_id=self.result.run_id,
                )
            )
            self.pending.pop(message_id, None)
        if rows:
            self.tx.write_rows("messages", rows, partition=self.partition)
        self.result.messages_deleted = len(rows)

    # ---- failures ------------------------------------------------------------------

    def _record_failure(
        self,
        folder_id: str | None,
        message_id: str | None,
        stage: str,
        outcome: str,
        error: Exception,
    ) -> None:
        reason = error_reason(error)
        log.warning(
            "mailbox %s: %s of message %s %s: %s",
            self.mailbox.user_principal_name,
            stage,
            message_id,
            outcome,
            reason,
        )
        self.tx.write_rows(
            "failures",
            [
                failure_from_error(
                    error,
                    workload="mail",
                    mailbox_id=self.mailbox.mailbox_id,
                    run_id=self.result.run_id,
                    container_id=folder_id,
                    item_id=message_id,
                    stage=stage,
                    outcome=outcome,
                )
            ],
            partition=self.partition,
        )
        self.result.failures += 1


async def backup_mailbox(
    graph: GraphClient,
    lake: Lake,
    mailbox: Mailbox,
    *,
    run_id: str,
    fetch_concurrency: int = 4,
    progress: ProgressCallback | None = None,
    checkpoint_messages: int = CHECKPOINT_MESSAGES,
) -> MailboxBackupResult:
    """Archive the changes in ``mailbox`` since its last commit.

    The run ends in one commit. Every ``checkpoint_messages`` archived messages (or
    ``CHECKPOINT_SECONDS``) it also commits at the end of a folder, so a run that
    dies on a large mailbox does not start over.
    """
    result = MailboxBackupResult(mailbox=mailbox, run_id=run_id, started_at=now_utc())
    tx = lake.begin(run_id=run_id, kind="mail", container=mailbox.mailbox_id)
    run = None
    try:
        # Read the archived state after the transaction has taken its starting point,
        # so a commit by a concurrent run in between is caught as a conflict.
        state = await asyncio.to_thread(load_mailbox_state, lake, mailbox.mailbox_id)
        run = _MailboxRun(
            graph,
            lake,
            tx,
            mailbox,
            state,
            result,
            fetch_concurrency=fetch_concurrency,
            progress=progress,
            checkpoint_messages=checkpoint_messages,
        )
        await run.execute()
        run.finish()
    finally:
        # Leaves committed work alone; drops only the open transaction's files.
        (run.tx if run else tx).abort()
    log.info(
        "mailbox %s committed in %d commits: %d new, %d updated, %d deleted, %d failures",
        mailbox.user_principal_name,
        result.commits,
        result.messages_new,
        result.messages_updated,
        result.messages_deleted,
        result.failures,
    )
    return result


def _run_row(result: MailboxBackupResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "kind": "mail",
        "container": result.mailbox.mailbox_id,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "status": "succeeded",
        "items_new": result.messages_new,
        "items_updated": result.messages_updated,
        "items_deleted": result.messages_deleted,
        "failures": result.failures,
        "bytes_downloaded": result.bytes_downloaded,
        "blobs_written": result.blobs_written,
    }

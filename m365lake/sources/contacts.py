"""Incremental backup of one mailbox's Outlook contacts into the lake.

One run reads the default Contacts folder, walks the other contact folders with folder
delta, then every folder with contact delta. Graph's JSON of each new or changed contact
is kept whole (``json_inline`` or a blob). Folders are tracked by id: two folders with
the same name in different places, such as ``Contacts`` and ``Contacts/contacts``, stay
two folders. Rows and the delta links that cover them are committed together at the end
of the run.

NOTE: unlike mail, a contacts run has no checkpoints between folders. A killed run starts
again from the last commit, which costs little because mailboxes hold far fewer contacts
than messages.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from m365lake.errors import ItemNotFoundError, SyncStateExpiredError
from m365lake.graph import GraphClient
from m365lake.lake import Lake, Transaction
from m365lake.sources import contact_rows
from m365lake.sources.contact_state import (
    ContactBookState,
    KnownContactFolder,
    load_contact_state,
)
from m365lake.sources.mailboxes import Mailbox
from m365lake.sources.rows import error_reason, failure_from_error, now_utc

log = logging.getLogger(__name__)

DELTA_PAGE_SIZE = 100
"""Contacts per delta page (``Prefer: odata.maxpagesize``)."""

PREFER = f'odata.maxpagesize={DELTA_PAGE_SIZE}, IdType="ImmutableId"'

MAX_RESYNCS = 3
"""Enumerations started again after a 410, per folder list or folder and run."""

WORKLOAD = "contacts"


def folders_delta_key(mailbox_id: str) -> str:
    return f"contacts/{mailbox_id}/folders/delta"


def contacts_delta_key(mailbox_id: str, folder_id: str) -> str:
    return f"contacts/{mailbox_id}/contacts/{folder_id}/delta"


def directory_key(mailbox_id: str) -> str:
    """Return the state key of the directory entry the last contacts run wrote."""
    return f"contacts/{mailbox_id}/directory"


def default_folder_key(mailbox_id: str) -> str:
    """Return the state key that records the id of the mailbox's default Contacts folder."""
    return f"contacts/{mailbox_id}/default-folder"


@dataclass
class ContactsBackupResult:
    """Counts of one mailbox's contacts run, as committed."""

    mailbox: Mailbox
    run_id: str
    started_at: datetime
    finished_at: datetime | None = None
    commit_seq: int | None = None
    folders: int = 0
    folders_changed: int = 0
    contacts_new: int = 0
    contacts_updated: int = 0
    contacts_deleted: int = 0
    contacts_unchanged: int = 0
    failures: int = 0
    resyncs: int = 0
    bytes_archived: int = 0
    blobs_written: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "contact_folders": self.folders,
            "contact_folders_changed": self.folders_changed,
            "contacts_new": self.contacts_new,
            "contacts_updated": self.contacts_updated,
            "contacts_deleted": self.contacts_deleted,
            "failures": self.failures,
            "resyncs": self.resyncs,
            "blobs_written": self.blobs_written,
        }


def folder_path(folders: dict[str, KnownContactFolder], folder_id: str) -> str:
    """Return the ``/``-joined names from the default folder down to ``folder_id``."""
    names: list[str] = []
    current: str | None = folder_id
    visited: set[str] = set()
    # A parent outside the map (the mailbox root) ends the walk; the visited set guards
    # against a cycle in a corrupt hierarchy.
    while current in folders and current not in visited:
        visited.add(current)
        names.append(folders[current].display_name)
        current = folders[current].parent_folder_id
    return "/".join(reversed(names))


class _ContactsRun:
    def __init__(
        self,
        graph: GraphClient,
        lake: Lake,
        tx: Transaction,
        mailbox: Mailbox,
        state: ContactBookState,
        result: ContactsBackupResult,
    ) -> None:
        self.graph = graph
        self.lake = lake
        self.tx = tx
        self.mailbox = mailbox
        self.state = state
        self.result = result
        self.partition = {"mailbox_id": mailbox.mailbox_id}
        self.folders: dict[str, KnownContactFolder] = {}
        self.captured: dict[str, str] = {}
        """Contact id → folder id of the version written by this run."""
        self.alive: dict[str, str] = {}
        """Contact id → folder where this run last saw the contact."""
        self.tombstones: list[tuple[str, str]] = []

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
            # A link is followed verbatim, so one saved for another host would send the
            # token there.
            log.warning(
                "saved contact delta link for %s points at %s, not %s; enumerating again",
                self.mailbox.user_principal_name,
                target.netloc,
                endpoint.netloc,
            )
            return None
        return str(link)

    async def execute(self) -> None:
        await self.sync_folders()
        for folder_id in sorted(self.folders):
            await self.sync_contacts(folder_id)
        self.record_deletions()

    # ---- folders -------------------------------------------------------------------

    async def _read_delta(self, url: str) -> tuple[list[dict[str, Any]], str | None]:
        items: list[dict[str, Any]] = []
        delta_link = None
        async for page in self.graph.delta(
            url, headers={"Prefer": PREFER}, mailbox=self.mailbox.mailbox_id
        ):
            items.extend(page.items)
            delta_link = page.delta_link or delta_link
        return items, delta_link

    async def sync_folders(self) -> None:
        # Graph's folder list and delta start below the default folder, so the run reads
        # the default folder through its well-known name.
        default = await self.graph.get_json(
            f"{self.user_path}/contactFolders/contacts", mailbox=self.mailbox.mailbox_id
        )
        key = folders_delta_key(self.mailbox.mailbox_id)
        initial = f"{self.user_path}/contactFolders/delta"
        link = self.saved_link(key)
        full = link is None
        url = link or initial
        for restarts in range(MAX_RESYNCS + 1):
            try:
                items, delta_link = await self._read_delta(url)
                break
            except SyncStateExpiredError:
                if restarts == MAX_RESYNCS:
                    raise
                log.info(
                    "contact folder delta token expired for %s; listing all folders again",
                    self.mailbox.user_principal_name,
                )
                self.result.resyncs += 1
                full, url = True, initial

        known_live = {fid: f for fid, f in self.state.folders.items() if not f.deleted}
        current: dict[str, KnownContactFolder] = {} if full else dict(known_live)
        for item in items:
            if "@removed" in item:
                current.pop(item["id"], None)
                continue
            current[item["id"]] = KnownContactFolder(
                item.get("parentFolderId"), item.get("displayName") or "", False
            )
        current[default["id"]] = KnownContactFolder(
            default.get("parentFolderId"), default.get("displayName") or "Contacts", False
        )
        # A restore maps this folder onto the target's default folder, which no other
        # folder without an archived parent is.
        if self.lake.state(default_folder_key(self.mailbox.mailbox_id)) != default["id"]:
            self.tx.set_state(default_folder_key(self.mailbox.mailbox_id), default["id"])
        self.folders = current
        deleted = set(known_live) - set(current)
        for folder_id in deleted:
            self.tx.set_state(contacts_delta_key(self.mailbox.mailbox_id, folder_id), None)
        self._write_folder_rows(known_live, deleted)
        self.result.folders = len(current)
        self.tx.set_state(key, delta_link)

    def _write_folder_rows(
        self, known_live: dict[str, KnownContactFolder], deleted: set[str]
    ) -> None:
        rows = []
        for folder_id, folder in sorted(self.folders.items()):
            path = folder_path(self.folders, folder_id)
            before = known_live.get(folder_id)
            if before == folder and folder_path(known_live, folder_id) == path:
                continue
            rows.append(
                self._folder_row(folder_id, folder, path, "updated" if before else "created")
            )
        for folder_id in sorted(deleted):
            folder = known_live[folder_id]
            rows.append(
                self._folder_row(folder_id, folder, folder_path(known_live, folder_id), "deleted")
            )
        if rows:
            self.tx.write_rows("contact_folders", rows, partition=self.partition)
        self.result.folders_changed = len(rows)

    def _folder_row(
        self, folder_id: str, folder: KnownContactFolder, path: str, change: str
    ) -> dict[str, Any]:
        return contact_rows.contact_folder_row(
            mailbox_id=self.mailbox.mailbox_id,
            folder_id=folder_id,
            parent_folder_id=folder.parent_folder_id,
            display_name=folder.display_name,
            folder_path=path,
            change=change,
            run_id=self.result.run_id,
        )

    # ---- contacts ------------------------------------------------------------------

    async def sync_contacts(self, folder_id: str) -> None:
        key = contacts_delta_key(self.mailbox.mailbox_id, folder_id)
        initial = f"{self.user_path}/contactFolders/{folder_id}/contacts/delta"
        link = self.saved_link(key)
        url = link or initial
        seen: set[str] = set()
        for restarts in range(MAX_RESYNCS + 1):
            try:
                items, delta_link = await self._read_delta(url)
                break
            except SyncStateExpiredError:
                if restarts == MAX_RESYNCS:
                    raise
                log.info(
                    "contact delta token expired for %s folder %s; enumerating it again",
                    self.mailbox.user_principal_name,
                    folder_id,
                )
                self.result.resyncs += 1
                link, url = None, initial
            except ItemNotFoundError as error:
                # Deleted after folder delta listed it; the next folder delta reports it.
                self._record_failure(folder_id, None, "list", "skipped", error)
                return
        for item in items:
            self._on_delta_item(item, folder_id, seen)
        if link is None:
            # A full enumeration is the folder's whole truth: archived contacts it did
            # not list are gone from this folder. Contacts it repeats are deduplicated
            # by id, so a resync writes no second version of an unchanged contact.
            for contact_id in self.state.live_contacts_in(folder_id) - seen:
                self.tombstones.append((folder_id, contact_id))
        self.tx.set_state(key, delta_link)

    def _on_delta_item(self, item: dict[str, Any], folder_id: str, seen: set[str]) -> None:
        contact_id = item["id"]
        if "@removed" in item:
            if self.alive.get(contact_id) == folder_id:
                del self.alive[contact_id]
            self.tombstones.append((folder_id, contact_id))
            return
        seen.add(contact_id)
        self.alive[contact_id] = folder_id
        if self.captured.get(contact_id) == folder_id:
            self.result.contacts_unchanged += 1
            return
        known = self.state.contacts.get(contact_id)
        unchanged = (
            known is not None
            and not known.deleted
            and known.change_key == item.get("changeKey")
            and known.folder_id == folder_id
        )
        if unchanged:
            self.result.contacts_unchanged += 1
            return
        change = "updated" if known is not None and not known.deleted else "created"
        self._store(item, folder_id, change)

    def _store(self, contact: dict[str, Any], folder_id: str, change: str) -> None:
        data = contact_rows.contact_json_bytes(contact)
        content = self.lake.store_content(data)
        new_blob = content.created
        row = contact_rows.contact_row(
            mailbox_id=self.mailbox.mailbox_id,
            contact=contact,
            folder_id=folder_id,
            folder_path=folder_path(self.folders, folder_id),
            change=change,
            run_id=self.result.run_id,
            content=content,
        )
        self.tx.write_rows("contacts", [row], partition=self.partition)
        self.captured[contact["id"]] = folder_id
        self.result.bytes_archived += len(data)
        self.result.blobs_written += int(new_blob)
        if change == "created":
            self.result.contacts_new += 1
        else:
            self.result.contacts_updated += 1

    # ---- deletions -----------------------------------------------------------------

    def _last_folder(self, contact_id: str) -> str | None:
        if contact_id in self.captured:
            return self.captured[contact_id]
        known = self.state.contacts.get(contact_id)
        if known is None or known.deleted:
            return None
        return known.folder_id

    def record_deletions(self) -> None:
        """Write a deletion for each contact gone from its last folder, or with its folder.

        Deletions wait for the end of the run, because a tombstone in one folder may be a
        move whose other half comes from a folder read later.
        """
        gone: dict[str, str] = {}
        for folder_id, contact_id in self.tombstones:
            if contact_id in self.alive or contact_id in gone:
                continue
            if self._last_folder(contact_id) == folder_id:
                gone[contact_id] = folder_id
        for contact_id, known in self.state.contacts.items():
            if known.deleted or contact_id in self.alive or contact_id in gone:
                continue
            last_folder = self._last_folder(contact_id)
            if last_folder is not None and last_folder not in self.folders:
                gone[contact_id] = last_folder
        rows = [
            contact_rows.contact_deletion_row(
                mailbox_id=self.mailbox.mailbox_id,
                contact_id=contact_id,
                folder_id=folder_id,
                folder_path=folder_path(self.folders, folder_id)
                if folder_id in self.folders
                else None,
                run_id=self.result.run_id,
            )
            for contact_id, folder_id in sorted(gone.items())
        ]
        if rows:
            self.tx.write_rows("contacts", rows, partition=self.partition)
        self.result.contacts_deleted = len(rows)

    def _record_failure(
        self,
        folder_id: str | None,
        contact_id: str | None,
        stage: str,
        outcome: str,
        error: Exception,
    ) -> None:
        reason = error_reason(error)
        log.warning(
            "mailbox %s: %s of contact folder %s %s: %s",
            self.mailbox.user_principal_name,
            stage,
            folder_id,
            outcome,
            reason,
        )
        self.tx.write_rows(
            "failures",
            [
                failure_from_error(
                    error,
                    workload=WORKLOAD,
                    mailbox_id=self.mailbox.mailbox_id,
                    run_id=self.result.run_id,
                    container_id=folder_id,
                    item_id=contact_id,
                    stage=stage,
                    outcome=outcome,
                )
            ],
            partition=self.partition,
        )
        self.result.failures += 1

    def finish(self) -> None:
        """Write the mailbox's directory entry when it changed, the run row, and commit."""
        self.result.finished_at = now_utc()
        # The same entry as the mail backup writes, so a lake holding only contacts still
        # lists the mailbox as a custodian. The state key is this workload's own, because
        # with a shared key a mail and a contacts run finishing at once could reject
        # each other's commit.
        directory_entry = self.mailbox.row()
        key = directory_key(self.mailbox.mailbox_id)
        if self.lake.state(key) != directory_entry:
            row = {**directory_entry, "captured_at": self.result.finished_at}
            self.tx.write_rows("mailboxes", [{**row, "run_id": self.result.run_id}], partition={})
            self.tx.set_state(key, directory_entry)
        self.tx.write_rows("runs", [_run_row(self.result)], partition={})
        manifest = self.tx.commit(counts=self.result.counts())
        self.result.commit_seq = manifest.get("seq")


async def backup_contacts_of(
    graph: GraphClient, lake: Lake, mailbox: Mailbox, *, run_id: str
) -> ContactsBackupResult:
    """Archive the contact changes in ``mailbox`` since its last contacts commit."""
    result = ContactsBackupResult(mailbox=mailbox, run_id=run_id, started_at=now_utc())
    tx = lake.begin(run_id=run_id, kind=WORKLOAD, container=mailbox.mailbox_id)
    try:
        # Read the archived state after the transaction took its starting point, so a
        # concurrent commit in between is caught as a conflict.
        state = await asyncio.to_thread(load_contact_state, lake, mailbox.mailbox_id)
        run = _ContactsRun(graph, lake, tx, mailbox, state, result)
        await run.execute()
        run.finish()
    finally:
        tx.abort()
    log.info(
        "contacts of %s committed: %d new, %d updated, %d deleted, %d failures",
        mailbox.user_principal_name,
        result.contacts_new,
        result.contacts_updated,
        result.contacts_deleted,
        result.failures,
    )
    return result


def _run_row(result: ContactsBackupResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "kind": WORKLOAD,
        "container": result.mailbox.mailbox_id,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "status": "succeeded",
        "items_new": result.contacts_new,
        "items_updated": result.contacts_updated,
        "items_deleted": result.contacts_deleted,
        "failures": result.failures,
        "bytes_downloaded": result.bytes_archived,
        "blobs_written": result.blobs_written,
    }

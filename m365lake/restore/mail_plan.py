"""Plan a mail restore: map archived folders to live ones and classify every message.

Folders are mapped by id, never by path alone. An archived folder that is still live (same
id, restoring into its own mailbox) is reused. One that is gone is looked up under its
mapped parent by name, so a second restore finds what the first created, and otherwise
created. Archived siblings that share a name stay apart: the first keeps the name, the
next get "Name (2)", "Name (3)" in a stable order.

A message is already present when the live target folder contains the archived item
itself (same immutable id) or the item an earlier restore made (found through the ledger
or the restore marker header). It collides when another live message there has the same
internetMessageId.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from m365lake.catalog import connect
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.restore.ledger import RestoreLedger
from m365lake.restore.mail_json import RESTORE_HEADER, restore_marker
from m365lake.restore.model import ConflictPolicy, PlannedItem, RestoreTarget
from m365lake.restore.selection import folders_as_of

logger = logging.getLogger(__name__)

IMMUTABLE_IDS = {"Prefer": 'IdType="ImmutableId"'}
FOLDER_VERSION = "folder"
RESTORE_FOLDER_KEY = ""
"""Folder key of the restore folder, which has no archived counterpart."""


@dataclass(frozen=True)
class MailPlannedItem(PlannedItem):
    """A plan line with what the executor needs to carry it out."""

    kind: str = "message"
    """``message`` or ``folder``."""
    folder_key: str | None = None
    """A folder's own archived id, or the archived folder a message goes into."""
    parent_key: str | None = None
    """For a folder: the archived parent's key; None for the top of the target mailbox."""
    display_name: str | None = None
    """For a folder: the name to create."""
    live_id: str | None = None
    """The live folder to reuse, or the live message that is already the restored one."""
    colliding_ids: tuple[str, ...] = ()
    """Live messages in the target folder with the same internetMessageId."""
    captured_at: datetime | None = None
    """When the archived message version was captured; with the ids it names the row.
    The row itself is not kept, so the plan stays small and holds no message content."""


@dataclass(frozen=True)
class LiveMessage:
    message_id: str
    internet_message_id: str | None
    marker: str | None


@dataclass
class LiveMailbox:
    """The live folders of a mailbox and, on demand, the messages of one folder."""

    mailbox_id: str
    root_id: str
    folders: dict[str, tuple[str | None, str]]
    """Folder id to (parent id, display name)."""
    _messages: dict[str, list[LiveMessage]] = field(default_factory=dict)

    def child_named(self, parent_id: str | None, name: str, taken: set[str]) -> str | None:
        """Return the live child of ``parent_id`` named ``name`` (any case), skipping ``taken``."""
        parent = parent_id or self.root_id
        wanted = name.casefold()
        for folder_id, (live_parent, live_name) in self.folders.items():
            if live_parent == parent and live_name.casefold() == wanted and folder_id not in taken:
                return folder_id
        return None

    async def messages(self, graph: GraphClient, folder_id: str) -> list[LiveMessage]:
        if folder_id not in self._messages:
            self._messages[folder_id] = await _read_messages(graph, self.mailbox_id, folder_id)
        return self._messages[folder_id]


def load_archived_rows(
    lake: Lake, items: Sequence[PlannedItem]
) -> dict[tuple[str, str, datetime | None], dict[str, Any]]:
    """Read the archived message rows the message lines of ``items`` were planned from."""
    wanted = {
        (item.source_container, item.source_item_id, item.captured_at)
        for item in items
        if isinstance(item, MailPlannedItem) and item.kind == "message"
    }
    if not wanted:
        return {}
    with connect(lake) as db:
        cursor = db.execute(
            "SELECT * FROM message_versions WHERE message_id IN (SELECT unnest(?))",
            [sorted({message_id for _, message_id, _ in wanted})],
        )
        names = [column[0] for column in cursor.description or []]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    found: dict[tuple[str, str, datetime | None], dict[str, Any]] = {}
    for row in rows:
        key = (row["mailbox_id"], row["message_id"], row["captured_at"])
        if key in wanted:
            found[key] = row
    return found


def row_key(item: MailPlannedItem) -> tuple[str, str, datetime | None]:
    return (item.source_container, item.source_item_id, item.captured_at)


async def read_live_mailbox(graph: GraphClient, mailbox_id: str) -> LiveMailbox:
    """Read the folder hierarchy of ``mailbox_id`` with one folder delta round."""
    root = await graph.get_json(
        f"/users/{mailbox_id}/mailFolders/msgfolderroot", mailbox=mailbox_id
    )
    folders: dict[str, tuple[str | None, str]] = {}
    async for page in graph.delta(
        f"/users/{mailbox_id}/mailFolders/delta",
        params={"$select": "displayName,parentFolderId"},
        mailbox=mailbox_id,
    ):
        for item in page.items:
            if "@removed" in item:
                folders.pop(item["id"], None)
            else:
                folders[item["id"]] = (item.get("parentFolderId"), item.get("displayName") or "")
    return LiveMailbox(mailbox_id, str(root["id"]), folders)


async def _read_messages(graph: GraphClient, mailbox_id: str, folder_id: str) -> list[LiveMessage]:
    found: list[LiveMessage] = []
    async for page in graph.iter_pages(
        f"/users/{mailbox_id}/mailFolders/{folder_id}/messages",
        params={"$select": "internetMessageId,internetMessageHeaders", "$top": 1000},
        headers=IMMUTABLE_IDS,
        mailbox=mailbox_id,
    ):
        for item in page.get("value", []):
            marker = next(
                (
                    header.get("value")
                    for header in item.get("internetMessageHeaders") or []
                    if str(header.get("name", "")).lower() == RESTORE_HEADER.lower()
                ),
                None,
            )
            found.append(LiveMessage(item["id"], item.get("internetMessageId"), marker))
    return found


@dataclass
class _FolderPlan:
    """Archived folder keys mapped to live folders (or to folders yet to be created)."""

    live_ids: dict[str, str | None] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    items: list[MailPlannedItem] = field(default_factory=list)


async def plan_mail_restore(
    lake: Lake,
    graph: GraphClient,
    rows: Sequence[dict[str, Any]],
    target: RestoreTarget,
    policy: ConflictPolicy,
    ledger: RestoreLedger,
    *,
    as_of: datetime | None = None,
    folder_scope: str | None = None,
) -> list[PlannedItem]:
    """Plan the restore of archived message ``rows``: folders first, then every message.

    ``policy`` only matters when the plan is carried out; a collision is planned the same
    way under every policy. ``folder_scope`` is the folder path a selection named: every
    archived folder below it is recreated, empty ones included, so the tree matches.
    """
    by_mailbox: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_mailbox[row["mailbox_id"]].append(row)
    plan: list[PlannedItem] = []
    for source_mailbox, mailbox_rows in by_mailbox.items():
        target_mailbox = target.mailbox_id or source_mailbox
        live = await read_live_mailbox(graph, target_mailbox)
        archived = {row["folder_id"]: row for row in folders_as_of(lake, source_mailbox, as_of)}
        used = {row["folder_id"] for row in mailbox_rows}
        if folder_scope is not None:
            used |= {key for key, row in archived.items() if _under(row, folder_scope)}
        folders = _plan_folders(
            source_mailbox, target_mailbox, archived, used, live, target, ledger
        )
        plan += folders.items
        for row in mailbox_rows:
            plan.append(await _plan_message(graph, row, target_mailbox, folders, live, ledger))
    logger.info("mail restore plan: %d lines (%s policy)", len(plan), policy.value)
    return plan


def _plan_folders(
    source_mailbox: str,
    target_mailbox: str,
    archived: dict[str, dict[str, Any]],
    used: set[str],
    live: LiveMailbox,
    target: RestoreTarget,
    ledger: RestoreLedger,
) -> _FolderPlan:
    plan = _FolderPlan()
    same_place = target_mailbox == source_mailbox and target.restore_folder is None
    top: str | None = None
    top_path = ""
    if target.restore_folder is not None:
        top_id = live.child_named(None, target.restore_folder, set())
        plan.items.append(
            _folder_item(
                source_mailbox,
                target_mailbox,
                RESTORE_FOLDER_KEY,
                None,
                target.restore_folder,
                "",
                target.restore_folder,
                top_id,
            )
        )
        plan.live_ids[RESTORE_FOLDER_KEY] = top_id
        top, top_path = RESTORE_FOLDER_KEY, target.restore_folder

    needed = _needed_folders(archived, used)
    names = _sibling_names(needed, archived, live if same_place else None)
    taken: set[str] = set()
    for folder_id in needed:
        folder = archived[folder_id]
        parent = folder.get("parent_folder_id")
        parent_key = parent if parent in archived else top
        parent_path = plan.paths.get(parent_key, top_path) if parent_key is not None else ""
        name = names[folder_id]
        path = f"{parent_path}/{name}" if parent_path else name
        plan.paths[folder_id] = path

        live_id: str | None = None
        if same_place and folder_id in live.folders:
            live_id = folder_id
        remembered = ledger.find("mail", source_mailbox, folder_id, FOLDER_VERSION, target_mailbox)
        if live_id is None and remembered in live.folders:
            live_id = remembered
        parent_live = plan.live_ids.get(parent_key) if parent_key is not None else live.root_id
        if live_id is None and parent_live is not None:
            live_id = live.child_named(parent_live, name, taken)
        if live_id is not None:
            taken.add(live_id)
        plan.live_ids[folder_id] = live_id
        plan.items.append(
            _folder_item(
                source_mailbox,
                target_mailbox,
                folder_id,
                parent_key,
                name,
                folder.get("folder_path") or "",
                path,
                live_id,
            )
        )
    return plan


def _folder_item(
    source_mailbox: str,
    target_mailbox: str,
    key: str,
    parent_key: str | None,
    name: str,
    source_path: str,
    target_path: str,
    live_id: str | None,
) -> MailPlannedItem:
    return MailPlannedItem(
        workload="mail",
        source_container=source_mailbox,
        source_item_id=key,
        source_version=FOLDER_VERSION,
        source_path=source_path,
        target_container=target_mailbox,
        target_path=target_path,
        action="already_present" if live_id is not None else "create",
        reason=None if live_id is None else f"live folder {live_id}",
        kind="folder",
        folder_key=key,
        parent_key=parent_key,
        display_name=name,
        live_id=live_id,
    )


def _under(folder: dict[str, Any], scope: str) -> bool:
    path = (folder.get("folder_path") or "").strip("/").casefold()
    wanted = scope.strip().strip("/").casefold()
    return path == wanted or path.startswith(wanted + "/")


def _needed_folders(archived: dict[str, dict[str, Any]], used: set[str]) -> list[str]:
    """Return the folders to map, parents first: message folders, their ancestors, subfolders."""
    children: dict[str | None, list[str]] = defaultdict(list)
    for folder_id, folder in archived.items():
        children[folder.get("parent_folder_id")].append(folder_id)
    needed: set[str] = set()
    for folder_id in used:
        current: str | None = folder_id
        while current in archived and current not in needed:
            needed.add(current)
            current = archived[current].get("parent_folder_id")
        stack = list(children.get(folder_id, []))
        while stack:
            child = stack.pop()
            if child not in needed:
                needed.add(child)
                stack.extend(children.get(child, []))

    def depth(folder_id: str) -> int:
        steps = 0
        current = archived[folder_id].get("parent_folder_id")
        while current in archived and steps < len(archived):
            steps += 1
            current = archived[current].get("parent_folder_id")
        return steps

    return sorted(needed, key=lambda folder_id: (depth(folder_id), folder_id))


def _sibling_names(
    needed: Sequence[str], archived: dict[str, dict[str, Any]], live: LiveMailbox | None
) -> dict[str, str]:
    """Give archived siblings that share a name distinct names; live ones keep theirs."""
    groups: dict[tuple[str | None, str], list[str]] = defaultdict(list)
    for folder_id in needed:
        folder = archived[folder_id]
        name = folder.get("display_name") or "Restored folder"
        groups[(folder.get("parent_folder_id"), name.casefold())].append(folder_id)
    names: dict[str, str] = {}
    for members in groups.values():
        members.sort(
            key=lambda folder_id: (live is None or folder_id not in live.folders, folder_id)
        )
        for rank, folder_id in enumerate(members):
            name = archived[folder_id].get("display_name") or "Restored folder"
            names[folder_id] = name if rank == 0 else f"{name} ({rank + 1})"
    return names


async def _plan_message(
    graph: GraphClient,
    row: dict[str, Any],
    target_mailbox: str,
    folders: _FolderPlan,
    live: LiveMailbox,
    ledger: RestoreLedger,
) -> MailPlannedItem:
    source_mailbox = row["mailbox_id"]
    message_id = row["message_id"]
    version = row.get("mime_sha256") or ""
    folder_key = row.get("folder_id")
    base = {
        "workload": "mail",
        "source_container": source_mailbox,
        "source_item_id": message_id,
        "source_version": version,
        "source_path": row.get("folder_path") or "",
        "target_container": target_mailbox,
        "target_path": folders.paths.get(folder_key or "", ""),
        "folder_key": folder_key,
        "captured_at": row.get("captured_at"),
    }
    if not version:
        return MailPlannedItem(**base, action="unrestorable", reason="no MIME was archived")
    if folder_key not in folders.paths:
        return MailPlannedItem(
            **base,
            action="unrestorable",
            reason=f"its folder {folder_key} is not in the archive's folder table",
        )
    folder_live = folders.live_ids.get(folder_key)
    if folder_live is None:
        return MailPlannedItem(**base, action="create")

    present = await live.messages(graph, folder_live)
    remembered = ledger.find("mail", source_mailbox, message_id, version, target_mailbox)
    marker = restore_marker(source_mailbox, message_id, version)
    for message in present:
        if message.message_id in (message_id, remembered) or message.marker == marker:
            return MailPlannedItem(
                **base,
                action="already_present",
                reason=f"live message {message.message_id}",
                live_id=message.message_id,
            )
    wanted = row.get("internet_message_id")
    colliding = tuple(
        message.message_id
        for message in present
        if wanted and message.internet_message_id == wanted
    )
    if colliding:
        return MailPlannedItem(
            **base,
            action="collision",
            reason=f"live message {', '.join(colliding)} has internetMessageId {wanted}",
            colliding_ids=colliding,
        )
    return MailPlannedItem(**base, action="create")

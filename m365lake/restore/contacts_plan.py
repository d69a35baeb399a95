"""Select archived contacts for a restore and plan it: folders by id mapping, collisions.

Folders are mapped by id and parent, never by path alone. The archived default folder
(recorded by the backup) maps to the target mailbox's default Contacts folder, or to the
restore folder below it. Graph creates contact folders only below the default folder, so
an archived folder beside it (created by Outlook at the top of the mailbox) comes back
as a child of the default folder.
Any other archived folder that is still live (same id, same mailbox) is reused. One that
is gone is looked up among the children of its mapped parent by name, so a second restore
finds what the first created, and is otherwise created. ``Contacts`` and its child
``contacts`` therefore stay two folders: the child is only ever looked for among the
default folder's children, never matched to the default folder itself.

A contact is already present when the target folder contains it (same id, restoring in
place) or the contact an earlier restore made (found through the ledger). It collides
when a live contact there has the same display name and the same first email address.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from m365lake.catalog import connect
from m365lake.discovery.search_api import search_hits
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.restore.ledger import RestoreLedger
from m365lake.restore.model import ConflictPolicy, PlannedItem, RestoreTarget
from m365lake.restore.selection import Selection, check_selection, mailbox_of
from m365lake.sources.contacts import default_folder_key

logger = logging.getLogger(__name__)

WORKLOAD = "contacts"
FOLDER_VERSION = "folder"


@dataclass(frozen=True)
class ContactPlannedItem(PlannedItem):
    """A plan line with what the executor needs to carry it out."""

    kind: str = "contact"
    """``contact`` or ``folder``."""
    folder_key: str | None = None
    """A folder's own archived id, or the archived folder a contact goes into."""
    parent_key: str | None = None
    """For a folder: the archived parent's key; None for the target's default folder."""
    display_name: str | None = None
    """For a folder: the name to create."""
    live_id: str | None = None
    """The live folder to reuse, or the live contact that is already the restored one."""
    colliding_ids: tuple[str, ...] = ()
    """Live contacts in the target folder with the same name and first email address."""
    json_inline: bytes | None = None
    """The archived contact JSON when the row stores it inline; else ``source_version``
    names its blob. Contacts are a few kilobytes, so the plan keeps them."""


def _versions(
    lake: Lake, view: str, keys: Sequence[str], as_of: datetime | None
) -> list[dict[str, Any]]:
    singular = {"contacts": "contact", "contact_folders": "contact_folder"}[view]
    with connect(lake) as db:
        if as_of is None:
            cursor = db.execute(
                f"SELECT * FROM {singular}_versions QUALIFY row_number() OVER "
                f"(PARTITION BY {', '.join(keys)} ORDER BY captured_at DESC) = 1"
            )
        else:
            cursor = db.execute(f"SELECT * FROM {view}_as_of(?)", [as_of])
        names = [column[0] for column in cursor.description or []]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def _under(path: str | None, prefix: str) -> bool:
    text = (path or "").strip().strip("/").casefold()
    wanted = prefix.strip().strip("/").casefold()
    return text == wanted or text.startswith(wanted + "/")


def select_contacts(lake: Lake, selection: Selection) -> list[dict[str, Any]]:
    """Return the archived contact rows the selection picks, when it names contacts.

    Contacts are restored only when the selection names the ``contacts`` workload, so a
    mail restore by custodian does not also create contacts.
    """
    check_selection(selection)
    if WORKLOAD not in selection.workloads:
        return []
    mailbox = mailbox_of(lake, selection.custodian) if selection.custodian else None
    if selection.custodian and mailbox is None:
        return []
    matched = None
    if selection.kql:
        matched = {
            (hit.container_id, hit.item_id)
            for hit in search_hits(lake, selection.kql, purpose="the restore --kql")
            if hit.workload == WORKLOAD
        }
    ids = set(selection.item_ids)
    rows = []
    for row in _versions(lake, "contacts", ("mailbox_id", "contact_id"), selection.as_of):
        if mailbox is not None and row["mailbox_id"] != mailbox:
            continue
        if ids and row["contact_id"] not in ids:
            continue
        if selection.folder is not None and not _under(row["folder_path"], selection.folder):
            continue
        if matched is not None and (row["mailbox_id"], row["contact_id"]) not in matched:
            continue
        rows.append(row)
    rows.sort(key=lambda row: (row["mailbox_id"], row["folder_path"] or "", row["contact_id"]))
    logger.info("restore selection picked %d contacts", len(rows))
    return rows


@dataclass
class LiveContactBook:
    """The live contact folders of a mailbox and, on demand, the contacts of one folder."""

    mailbox_id: str
    default_id: str
    folders: dict[str, tuple[str | None, str]]
    """Folder id to (parent id, display name), the default folder included."""
    _contacts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def child_named(self, parent_id: str, name: str, taken: set[str]) -> str | None:
        """Return the live child of ``parent_id`` named ``name`` (any case), skipping ``taken``."""
        wanted = name.casefold()
        for folder_id, (parent, live_name) in self.folders.items():
            if parent == parent_id and live_name.casefold() == wanted and folder_id not in taken:
                return folder_id
        return None

    async def contacts(self, graph: GraphClient, folder_id: str) -> list[dict[str, Any]]:
        if folder_id not in self._contacts:
            found: list[dict[str, Any]] = []
            async for page in graph.iter_pages(
                f"/users/{self.mailbox_id}/contactFolders/{folder_id}/contacts",
                params={"$select": "displayName,emailAddresses", "$top": 1000},
                mailbox=self.mailbox_id,
            ):
                found.extend(page.get("value", []))
            self._contacts[folder_id] = found
        return self._contacts[folder_id]


async def read_live_book(graph: GraphClient, mailbox_id: str) -> LiveContactBook:
    """Read the default folder and, with one folder delta round, every other folder."""
    default = await graph.get_json(
        f"/users/{mailbox_id}/contactFolders/contacts", mailbox=mailbox_id
    )
    folders: dict[str, tuple[str | None, str]] = {
        default["id"]: (default.get("parentFolderId"), default.get("displayName") or "")
    }
    async for page in graph.delta(f"/users/{mailbox_id}/contactFolders/delta", mailbox=mailbox_id):
        for item in page.items:
            if "@removed" in item:
                folders.pop(item["id"], None)
            else:
                folders[item["id"]] = (item.get("parentFolderId"), item.get("displayName") or "")
    return LiveContactBook(mailbox_id, str(default["id"]), folders)


def archived_folders(
    lake: Lake, mailbox_id: str, as_of: datetime | None
) -> dict[str, dict[str, Any]]:
    """Return the archived contact folders of ``mailbox_id`` as of ``as_of``, deleted ones too."""
    rows = _versions(lake, "contact_folders", ("mailbox_id", "folder_id"), as_of)
    return {row["folder_id"]: row for row in rows if row["mailbox_id"] == mailbox_id}


@dataclass
class _FolderPlan:
    live_ids: dict[str, str | None] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    items: list[ContactPlannedItem] = field(default_factory=list)


def _ordered(archived: dict[str, dict[str, Any]], used: set[str]) -> list[str]:
    """Return the folders to map, parents first: the contact folders and their ancestors."""
    needed: set[str] = set()
    for folder_id in used:
        current: str | None = folder_id
        while current in archived and current not in needed:
            needed.add(current)
            current = archived[current].get("parent_folder_id")

    def depth(folder_id: str) -> int:
        steps = 0
        current = archived[folder_id].get("parent_folder_id")
        while current in archived and steps < len(archived):
            steps += 1
            current = archived[current].get("parent_folder_id")
        return steps

    return sorted(needed, key=lambda folder_id: (depth(folder_id), folder_id))


def _sibling_names(
    needed: Sequence[str], archived: dict[str, dict[str, Any]], parents: dict[str, str | None]
) -> dict[str, str]:
    """Give folders that end up siblings with a name in common (any case) distinct names.

    Exchange rejects such siblings, and creating one would find the other and merge them.
    """
    groups: dict[tuple[str | None, str], list[str]] = defaultdict(list)
    for folder_id in needed:
        name = archived[folder_id].get("display_name") or "Restored folder"
        groups[(parents[folder_id], name.casefold())].append(folder_id)
    names: dict[str, str] = {}
    for members in groups.values():
        for rank, folder_id in enumerate(sorted(members)):
            name = archived[folder_id].get("display_name") or "Restored folder"
            names[folder_id] = name if rank == 0 else f"{name} ({rank + 1})"
    return names


def _folder_item(
    source: str,
    target: str,
    key: str,
    parent: str | None,
    name: str,
    source_path: str,
    target_path: str,
    live_id: str | None,
) -> ContactPlannedItem:
    return ContactPlannedItem(
        workload=WORKLOAD,
        source_container=source,
        source_item_id=key,
        source_version=FOLDER_VERSION,
        source_path=source_path,
        target_container=target,
        target_path=target_path,
        action="already_present" if live_id is not None else "create",
        reason=None if live_id is None else f"live folder {live_id}",
        kind="folder",
        folder_key=key,
        parent_key=parent,
        display_name=name,
        live_id=live_id,
    )


def archived_default(lake: Lake, source: str, archived: dict[str, dict[str, Any]]) -> str | None:
    """Return the archived id of the source mailbox's default Contacts folder, if known.

    Lakes written before the backup recorded it fall back to the only folder without an
    archived parent, when there is exactly one.
    """
    recorded = lake.state(default_folder_key(source))
    if recorded is not None:
        return str(recorded)
    roots = [key for key, row in archived.items() if row.get("parent_folder_id") not in archived]
    return roots[0] if len(roots) == 1 else None


def _plan_folders(
    source: str,
    target_mailbox: str,
    archived: dict[str, dict[str, Any]],
    default_key: str | None,
    used: set[str],
    live: LiveContactBook,
    target: RestoreTarget,
    ledger: RestoreLedger,
) -> _FolderPlan:
    plan = _FolderPlan()
    same_place = target_mailbox == source and target.restore_folder is None
    needed = _ordered(archived, used)
    needed.sort(key=lambda folder_id: folder_id != default_key)  # stable: default first
    # A folder beside the default one (Outlook can create them at the top of the
    # mailbox) comes back below the default folder: Graph creates contact folders only
    # there. None stands for the target's top folder when the default is not archived.
    parents: dict[str, str | None] = {}
    for folder_id in needed:
        parent = archived[folder_id].get("parent_folder_id")
        parents[folder_id] = parent if parent in archived else default_key
    # The default folder is not a child of itself: its name never clashes with its
    # children's, which is what keeps Contacts/contacts apart from Contacts.
    names = _sibling_names([f for f in needed if f != default_key], archived, parents)
    taken: set[str] = set()
    default_name = live.folders[live.default_id][1]
    for folder_id in needed:
        folder = archived[folder_id]
        parent = parents[folder_id]
        source_path = folder.get("folder_path") or ""
        if folder_id == default_key:
            # The archived default folder maps to the target's default folder, or to the
            # restore folder created below it. A parent key of None means the live default.
            if target.restore_folder is None:
                live_id: str | None = live.default_id
                name, path = default_name, default_name
            else:
                name = target.restore_folder
                path = f"{default_name}/{name}"
                live_id = live.child_named(live.default_id, name, taken)
            plan.paths[folder_id] = path
            plan.live_ids[folder_id] = live_id
            plan.items.append(
                _folder_item(
                    source, target_mailbox, folder_id, None, name, source_path, path, live_id
                )
            )
            continue
        name = names[folder_id]
        parent_path = plan.paths[parent] if parent is not None else _top_path(live, target)
        path = f"{parent_path}/{name}"
        plan.paths[folder_id] = path
        live_id = None
        if same_place and folder_id in live.folders:
            live_id = folder_id
        remembered = ledger.find(WORKLOAD, source, folder_id, FOLDER_VERSION, target_mailbox)
        if live_id is None and remembered in live.folders:
            live_id = remembered
        parent_live = plan.live_ids.get(parent) if parent is not None else _top_live(live, target)
        if live_id is None and parent_live is not None:
            live_id = live.child_named(parent_live, name, taken)
        if live_id is not None:
            taken.add(live_id)
        plan.live_ids[folder_id] = live_id
        plan.items.append(
            _folder_item(
                source, target_mailbox, folder_id, parent, name, source_path, path, live_id
            )
        )
    return plan


def _top_path(live: LiveContactBook, target: RestoreTarget) -> str:
    default_name = live.folders[live.default_id][1]
    if target.restore_folder is None:
        return default_name
    return f"{default_name}/{target.restore_folder}"


def _top_live(live: LiveContactBook, target: RestoreTarget) -> str | None:
    if target.restore_folder is None:
        return live.default_id
    return live.child_named(live.default_id, target.restore_folder, set())


def _first_address(contact: dict[str, Any]) -> str:
    for entry in contact.get("emailAddresses") or []:
        if entry.get("address"):
            return str(entry["address"]).casefold()
    return ""


async def _plan_contact(
    graph: GraphClient,
    row: dict[str, Any],
    target_mailbox: str,
    folders: _FolderPlan,
    live: LiveContactBook,
    ledger: RestoreLedger,
) -> ContactPlannedItem:
    source = row["mailbox_id"]
    contact_id = row["contact_id"]
    version = row.get("json_sha256") or ""
    folder_key = row.get("folder_id")
    base: dict[str, Any] = {
        "workload": WORKLOAD,
        "source_container": source,
        "source_item_id": contact_id,
        "source_version": version,
        "source_path": row.get("folder_path") or "",
        "target_container": target_mailbox,
        "target_path": folders.paths.get(folder_key or "", ""),
        "folder_key": folder_key,
        "display_name": row.get("display_name"),
        "json_inline": row.get("json_inline"),
    }
    if not version:
        return ContactPlannedItem(**base, action="unrestorable", reason="no JSON was archived")
    if folder_key not in folders.paths:
        return ContactPlannedItem(
            **base,
            action="unrestorable",
            reason=f"its folder {folder_key} is not in the archive's contact_folders table",
        )
    folder_live = folders.live_ids.get(folder_key)
    if folder_live is None:
        return ContactPlannedItem(**base, action="create")
    present = await live.contacts(graph, folder_live)
    remembered = ledger.find(WORKLOAD, source, contact_id, version, target_mailbox)
    for contact in present:
        if contact["id"] in (contact_id, remembered):
            return ContactPlannedItem(
                **base,
                action="already_present",
                reason=f"live contact {contact['id']}",
                live_id=contact["id"],
            )
    wanted = ((row.get("display_name") or "").casefold(), _first_address_of_row(row))
    colliding = tuple(
        contact["id"]
        for contact in present
        if ((contact.get("displayName") or "").casefold(), _first_address(contact)) == wanted
    )
    if colliding:
        return ContactPlannedItem(
            **base,
            action="collision",
            reason=f"live contact {', '.join(colliding)} has the same name and email address",
            colliding_ids=colliding,
        )
    return ContactPlannedItem(**base, action="create")


def _first_address_of_row(row: dict[str, Any]) -> str:
    addresses = row.get("email_addresses") or []
    return str(addresses[0]).casefold() if addresses else ""


async def plan_contacts_restore(
    lake: Lake,
    graph: GraphClient,
    rows: Sequence[dict[str, Any]],
    target: RestoreTarget,
    policy: ConflictPolicy,
    ledger: RestoreLedger,
    *,
    as_of: datetime | None = None,
) -> list[PlannedItem]:
    """Plan the restore of archived contact ``rows``: folders first, then every contact."""
    by_mailbox: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_mailbox[row["mailbox_id"]].append(row)
    plan: list[PlannedItem] = []
    for source, mailbox_rows in by_mailbox.items():
        target_mailbox = target.mailbox_id or source
        live = await read_live_book(graph, target_mailbox)
        archived = archived_folders(lake, source, as_of)
        default_key = archived_default(lake, source, archived)
        used = {row["folder_id"] for row in mailbox_rows if row.get("folder_id")}
        if default_key in archived:
            # Mapped first, so folders beside it can be placed below its target.
            used.add(default_key)
        folders = _plan_folders(
            source, target_mailbox, archived, default_key, used, live, target, ledger
        )
        plan += folders.items
        for row in mailbox_rows:
            plan.append(await _plan_contact(graph, row, target_mailbox, folders, live, ledger))
    logger.info("contacts restore plan: %d lines (%s policy)", len(plan), policy.value)
    return plan

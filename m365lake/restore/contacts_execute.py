"""Carry out a contacts restore plan (folders, then contacts) and verify what it created.

Each contact is one JSON create of the archived Graph properties that a client may write.
Exchange assigns the id, change key, timestamps and parent folder itself.
Results reach the ledger every ``LEDGER_BATCH`` items and at the end, so a killed restore
keeps what it created.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from m365lake.errors import GraphError, ItemNotFoundError
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.restore import ledger as restore_ledger
from m365lake.restore.contacts_plan import ContactPlannedItem
from m365lake.restore.ledger import RestoreLedger
from m365lake.restore.model import (
    ConflictPolicy,
    ItemResult,
    Outcome,
    PlannedItem,
    Severity,
    VerifyFinding,
)

logger = logging.getLogger(__name__)

LEDGER_BATCH = 200
WORKLOAD = "contacts"

# Properties that Exchange assigns, which a create must not send.
_READ_ONLY = frozenset(
    ("id", "changeKey", "createdDateTime", "lastModifiedDateTime", "parentFolderId")
)
# Properties compared after the restore, as the archive has them and Graph returns them.
VERIFIED = (
    "displayName",
    "givenName",
    "surname",
    "companyName",
    "jobTitle",
    "emailAddresses",
    "businessPhones",
    "homePhones",
    "mobilePhone",
    "businessAddress",
    "homeAddress",
    "categories",
    "personalNotes",
    "birthday",
)
_COLLISION_OUTCOMES = {
    ConflictPolicy.RENAME: Outcome.RENAMED,
    ConflictPolicy.REPLACE: Outcome.REPLACED,
}


def create_body(contact: dict[str, Any]) -> dict[str, Any]:
    """Return the archived contact JSON without what Exchange assigns or annotates."""
    return {
        name: value
        for name, value in contact.items()
        if name not in _READ_ONLY and not name.startswith("@") and value is not None
    }


def _archived_json(lake: Lake, item: ContactPlannedItem) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(lake.read_content(item.source_version, item.json_inline))
    return document


def _failed(item: ContactPlannedItem, action: str, error: Exception) -> ItemResult:
    logger.warning(
        "contacts restore: %s %s in %s failed: %s",
        action,
        item.source_item_id,
        item.target_container,
        error,
    )
    return ItemResult(item, Outcome.FAILED, reason=f"{action} failed: {error}")


async def run_contacts_restore(
    lake: Lake,
    graph: GraphClient,
    plan: list[PlannedItem],
    *,
    restore_id: str,
    policy: ConflictPolicy,
    ledger: RestoreLedger,
) -> list[ItemResult]:
    """Carry out ``plan`` (from ``plan_contacts_restore``) and return one result per line."""
    items = [item for item in plan if isinstance(item, ContactPlannedItem)]
    folders: dict[tuple[str, str], str] = {}
    results: list[ItemResult] = []
    pending: list[ItemResult] = []

    def done(result: ItemResult) -> None:
        results.append(result)
        pending.append(result)
        ledger.remember([result])
        if len(pending) >= LEDGER_BATCH:
            restore_ledger.record(lake, restore_id, pending)
            pending.clear()

    try:
        for item in items:
            if item.kind == "folder":
                done(await _restore_folder(graph, item, folders))
        for item in items:
            if item.kind == "contact":
                done(await _restore_contact(lake, graph, item, folders, policy))
    finally:
        restore_ledger.record(lake, restore_id, pending)
    return results


async def _restore_folder(
    graph: GraphClient, item: ContactPlannedItem, folders: dict[tuple[str, str], str]
) -> ItemResult:
    mailbox = item.target_container
    key = item.folder_key or ""
    if item.live_id is not None:
        folders[(mailbox, key)] = item.live_id
        return ItemResult(item, Outcome.ALREADY_PRESENT, item.live_id, item.reason)
    if item.parent_key is None:
        # The well-known name reaches the default folder in any mailbox.
        parent = "contacts"
    elif (mailbox, item.parent_key) in folders:
        parent = folders[(mailbox, item.parent_key)]
    else:
        return ItemResult(item, Outcome.FAILED, reason="its parent folder was not restored")
    name = item.display_name or "Restored folder"
    url = f"/users/{mailbox}/contactFolders/{parent}/childFolders"
    try:
        created = await graph.send_json("POST", url, json={"displayName": name}, mailbox=mailbox)
    except GraphError as error:
        if error.status != 409:
            return _failed(item, "creating the folder", error)
        # Created meanwhile (by a concurrent or killed restore): take the live one.
        existing = await _child_named(graph, mailbox, parent, name)
        if existing is None:
            return _failed(item, "creating the folder", error)
        folders[(mailbox, key)] = existing
        return ItemResult(item, Outcome.ALREADY_PRESENT, existing, f"live folder {existing}")
    folder_id = str((created or {})["id"])
    folders[(mailbox, key)] = folder_id
    return ItemResult(item, Outcome.CREATED, folder_id)


async def _child_named(graph: GraphClient, mailbox: str, parent: str, name: str) -> str | None:
    async for page in graph.iter_pages(
        f"/users/{mailbox}/contactFolders/{parent}/childFolders", mailbox=mailbox
    ):
        for folder in page.get("value", []):
            if str(folder.get("displayName", "")).casefold() == name.casefold():
                return str(folder["id"])
    return None


async def _restore_contact(
    lake: Lake,
    graph: GraphClient,
    item: ContactPlannedItem,
    folders: dict[tuple[str, str], str],
    policy: ConflictPolicy,
) -> ItemResult:
    if item.action == "unrestorable":
        return ItemResult(item, Outcome.UNRESTORABLE, reason=item.reason)
    if item.action == "already_present":
        return ItemResult(item, Outcome.ALREADY_PRESENT, item.live_id, item.reason)
    if item.action == "collision" and policy is ConflictPolicy.SKIP:
        return ItemResult(item, Outcome.SKIPPED, reason=item.reason)
    mailbox = item.target_container
    folder = folders.get((mailbox, item.folder_key or ""))
    if folder is None:
        return ItemResult(item, Outcome.FAILED, reason="its folder was not restored")
    if item.action == "collision" and policy is ConflictPolicy.REPLACE:
        for live_id in item.colliding_ids:
            try:
                await graph.send_json(
                    "DELETE", f"/users/{mailbox}/contacts/{live_id}", mailbox=mailbox
                )
            except ItemNotFoundError:
                continue
            except GraphError as error:
                return _failed(item, "deleting the colliding contact", error)
    body = create_body(_archived_json(lake, item))
    try:
        created = await graph.send_json(
            "POST", f"/users/{mailbox}/contactFolders/{folder}/contacts", json=body, mailbox=mailbox
        )
    except GraphError as error:
        return _failed(item, "creating the contact", error)
    outcome = Outcome.CREATED
    if item.action == "collision":
        outcome = _COLLISION_OUTCOMES[policy]
    return ItemResult(item, outcome, str((created or {})["id"]))


async def verify_contacts_restore(
    lake: Lake, graph: GraphClient, results: list[ItemResult]
) -> list[VerifyFinding]:
    """Read every created contact back and compare it with its archived version."""
    findings: list[VerifyFinding] = []
    folders = {
        (result.planned.target_container, result.planned.folder_key): result.target_item_id
        for result in results
        if isinstance(result.planned, ContactPlannedItem)
        and result.planned.kind == "folder"
        and result.target_item_id
    }
    for result in results:
        item = result.planned
        if not isinstance(item, ContactPlannedItem) or item.kind != "contact":
            continue
        if result.outcome not in (Outcome.CREATED, Outcome.RENAMED, Outcome.REPLACED):
            continue
        findings += await _verify_one(lake, graph, item, result, folders)
    logger.info("contacts restore verified: %d findings", len(findings))
    return findings


async def _verify_one(
    lake: Lake,
    graph: GraphClient,
    item: ContactPlannedItem,
    result: ItemResult,
    folders: Mapping[tuple[str, str | None], str],
) -> list[VerifyFinding]:
    mailbox = item.target_container

    def finding(field: str, expected: Any, actual: Any, severity: Severity) -> VerifyFinding:
        return VerifyFinding(
            WORKLOAD,
            item.source_item_id,
            result.target_item_id,
            field,
            None if expected is None else json.dumps(expected, sort_keys=True),
            None if actual is None else json.dumps(actual, sort_keys=True),
            severity,
        )

    try:
        live = await graph.get_json(
            f"/users/{mailbox}/contacts/{result.target_item_id}", mailbox=mailbox
        )
    except GraphError as error:
        return [finding("contact", item.source_item_id, str(error), Severity.MISSING)]
    found: list[VerifyFinding] = []
    expected_folder = folders.get((mailbox, item.folder_key))
    if expected_folder is not None and live.get("parentFolderId") != expected_folder:
        found.append(
            finding(
                "parentFolderId", expected_folder, live.get("parentFolderId"), Severity.MISMATCH
            )
        )
    archived = _archived_json(lake, item)
    for name in VERIFIED:
        expected, actual = _normal(archived.get(name)), _normal(live.get(name))
        if expected != actual:
            found.append(finding(name, expected, actual, Severity.MISMATCH))
    return found


def _normal(value: Any) -> Any:
    """Treat a missing value, null, "" and an empty list or object as the same absence."""
    return None if value in (None, "", [], {}) else value

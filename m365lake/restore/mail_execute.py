"""Carry out a mail restore plan: create folders, then messages with their attachments.

Each message is one JSON create (under 4 MB) with the extended properties that make it
received mail, then one ``POST .../attachments`` per attachment that did not fit, and an
attachment upload session per file of 3 MB or more. A message whose attachments fail is
deleted again and reported as failed, so no half-restored message stays behind.

Results reach the ledger every ``LEDGER_BATCH`` items and at the end, so a killed restore
keeps what it created.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import Any

from m365lake.errors import GraphError, ItemNotFoundError
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.restore import ledger as restore_ledger
from m365lake.restore.ledger import RestoreLedger
from m365lake.restore.mail_json import AttachmentSource, build_create, restore_marker
from m365lake.restore.mail_plan import (
    IMMUTABLE_IDS,
    MailPlannedItem,
    load_archived_rows,
    row_key,
)
from m365lake.restore.model import ConflictPolicy, ItemResult, Outcome, PlannedItem

logger = logging.getLogger(__name__)

LEDGER_BATCH = 200
MESSAGES_IN_FLIGHT = 4
"""Messages restored at once; Exchange allows four concurrent requests per mailbox."""
UPLOAD_CHUNK_BYTES = 3 * 1024 * 1024
"""Upload session range size; Outlook accepts at most 4 MB per range."""

_COLLISION_OUTCOMES = {
    ConflictPolicy.RENAME: Outcome.RENAMED,
    ConflictPolicy.REPLACE: Outcome.REPLACED,
}
_ATTACHMENT_ID = re.compile(r"attachments\('([^']+)'\)", re.IGNORECASE)


class _Folders:
    """Live folder ids by (target mailbox, archived folder key), filled while folders run."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], str] = {}

    def get(self, mailbox: str, key: str | None) -> str | None:
        return None if key is None else self.ids.get((mailbox, key))


async def run_mail_restore(
    lake: Lake,
    graph: GraphClient,
    plan: list[PlannedItem],
    *,
    restore_id: str,
    policy: ConflictPolicy,
    ledger: RestoreLedger,
) -> list[ItemResult]:
    """Carry out ``plan`` (from ``plan_mail_restore``) and return one result per line."""
    items = [item for item in plan if isinstance(item, MailPlannedItem)]
    rows = load_archived_rows(lake, items)
    folders = _Folders()
    results: list[ItemResult] = []
    pending: list[ItemResult] = []

    def done(batch: Sequence[ItemResult]) -> None:
        results.extend(batch)
        pending.extend(batch)
        ledger.remember(batch)
        if len(pending) >= LEDGER_BATCH:
            restore_ledger.record(lake, restore_id, pending)
            pending.clear()

    try:
        for item in (entry for entry in items if entry.kind == "folder"):
            done([await _restore_folder(graph, item, folders)])
        messages = [entry for entry in items if entry.kind == "message"]
        for start in range(0, len(messages), MESSAGES_IN_FLIGHT):
            window = messages[start : start + MESSAGES_IN_FLIGHT]
            tasks = [
                _restore_message(lake, graph, item, rows.get(row_key(item)), folders, policy)
                for item in window
            ]
            done(await asyncio.gather(*tasks))
    finally:
        restore_ledger.record(lake, restore_id, pending)
    return results


async def _restore_folder(
    graph: GraphClient, item: MailPlannedItem, folders: _Folders
) -> ItemResult:
    mailbox = item.target_container
    key = item.folder_key or ""
    if item.live_id is not None:
        folders.ids[(mailbox, key)] = item.live_id
        return ItemResult(item, Outcome.ALREADY_PRESENT, item.live_id, item.reason)
    parent = folders.get(mailbox, item.parent_key)
    if item.parent_key is not None and parent is None:
        return ItemResult(item, Outcome.FAILED, reason="its parent folder was not restored")
    url = (
        f"/users/{mailbox}/mailFolders/{parent}/childFolders"
        if parent is not None
        else f"/users/{mailbox}/mailFolders"
    )
    name = item.display_name or "Restored folder"
    try:
        created = await graph.send_json("POST", url, json={"displayName": name}, mailbox=mailbox)
    except GraphError as error:
        if error.status != 409:
            return _failed(item, "creating the folder", error)
        # Made since the plan was read (another run, a user): use the live folder.
        existing = await _child_named(graph, mailbox, parent, name)
        if existing is None:
            return _failed(item, "creating the folder", error)
        folders.ids[(mailbox, key)] = existing
        return ItemResult(item, Outcome.ALREADY_PRESENT, existing, "created since the plan")
    folder_id = str((created or {})["id"])
    folders.ids[(mailbox, key)] = folder_id
    return ItemResult(item, Outcome.CREATED, folder_id)


async def _child_named(
    graph: GraphClient, mailbox: str, parent: str | None, name: str
) -> str | None:
    url = (
        f"/users/{mailbox}/mailFolders/{parent}/childFolders"
        if parent is not None
        else f"/users/{mailbox}/mailFolders"
    )
    async for page in graph.iter_pages(
        url, params={"includeHiddenFolders": "true", "$top": 1000}, mailbox=mailbox
    ):
        for folder in page.get("value", []):
            if str(folder.get("displayName", "")).casefold() == name.casefold():
                return str(folder["id"])
    return None


async def _restore_message(
    lake: Lake,
    graph: GraphClient,
    item: MailPlannedItem,
    row: dict[str, Any] | None,
    folders: _Folders,
    policy: ConflictPolicy,
) -> ItemResult:
    if item.action == "unrestorable":
        return ItemResult(item, Outcome.UNRESTORABLE, reason=item.reason)
    if item.action == "already_present":
        return ItemResult(item, Outcome.ALREADY_PRESENT, item.live_id, item.reason)
    if item.action == "collision" and policy is ConflictPolicy.SKIP:
        return ItemResult(item, Outcome.SKIPPED, reason=item.reason)

    folder = folders.get(item.target_container, item.folder_key)
    if folder is None:
        return ItemResult(item, Outcome.FAILED, reason="its folder was not restored")
    if row is None:
        return ItemResult(
            item, Outcome.FAILED, reason="its archived version is no longer in the lake"
        )
    try:
        created = await create_message(lake, graph, item, row, folder)
    except (GraphError, ValueError, KeyError, OSError) as error:
        return _failed(item, "creating the message", error)
    if item.action != "collision":
        return ItemResult(item, Outcome.CREATED, created)

    outcome = _COLLISION_OUTCOMES[policy]
    if policy is ConflictPolicy.REPLACE:
        # The copy exists before the live item goes, so a failure here loses nothing.
        for live_id in item.colliding_ids:
            try:
                await graph.send_json(
                    "DELETE",
                    f"/users/{item.target_container}/messages/{live_id}",
                    headers=IMMUTABLE_IDS,
                    mailbox=item.target_container,
                )
            except ItemNotFoundError:
                continue  # deleted since the plan: nothing left to replace
            except GraphError as error:
                return ItemResult(
                    item,
                    Outcome.FAILED,
                    created,
                    f"restored beside live message {live_id} but could not delete it: {error}",
                )
    return ItemResult(item, outcome, created, item.reason)


async def create_message(
    lake: Lake, graph: GraphClient, item: MailPlannedItem, row: dict[str, Any], folder_id: str
) -> str:
    """Create the archived message ``row`` of ``item`` in ``folder_id``; return its id.

    The id is the immutable id, as the plan's listings use.
    """
    mime = lake.read_content(item.source_version, row.get("mime_inline"))
    marker = restore_marker(item.source_container, item.source_item_id, item.source_version)
    request = build_create(mime, row, marker=marker)
    mailbox = item.target_container
    created = await graph.send_json(
        "POST",
        f"/users/{mailbox}/mailFolders/{folder_id}/messages",
        json=request.body,
        headers=IMMUTABLE_IDS,
        mailbox=mailbox,
    )
    message_id = str((created or {})["id"])
    try:
        for attachment in request.later:
            await _add_attachment(graph, mailbox, message_id, attachment)
    except (GraphError, ValueError) as error:
        logger.info("attachments of restored message %s failed; deleting it", message_id)
        try:
            await graph.send_json(
                "DELETE",
                f"/users/{mailbox}/messages/{message_id}",
                headers=IMMUTABLE_IDS,
                mailbox=mailbox,
            )
        except GraphError as cleanup:
            raise ValueError(
                f"adding attachments failed ({error}) and the partial message {message_id} "
                f"could not be deleted ({cleanup}); delete it by hand"
            ) from error
        raise
    return message_id


async def _add_attachment(
    graph: GraphClient, mailbox: str, message_id: str, attachment: AttachmentSource
) -> None:
    url = f"/users/{mailbox}/messages/{message_id}/attachments"
    if not attachment.needs_session:
        await graph.send_json(
            "POST", url, json=attachment.file_json(), headers=IMMUTABLE_IDS, mailbox=mailbox
        )
        return
    item: dict[str, Any] = {
        "attachmentType": "file",
        "name": attachment.name,
        "size": len(attachment.content),
        "contentType": attachment.content_type,
        "isInline": attachment.is_inline,
    }
    if attachment.content_id:
        item["contentId"] = attachment.content_id
    session = await graph.send_json(
        "POST",
        url + "/createUploadSession",
        json={"AttachmentItem": item},
        headers=IMMUTABLE_IDS,
        mailbox=mailbox,
    )
    upload_url = str((session or {})["uploadUrl"])
    await upload_attachment(graph, upload_url, attachment.content)


async def upload_attachment(graph: GraphClient, upload_url: str, content: bytes) -> str | None:
    """Send ``content`` to an attachment upload session in order; return the attachment id.

    After a 416 the session's next expected offset is read back and the upload resumes
    there, because a lost response may hide a range the server already stored.
    """
    total = len(content)
    start = 0
    while start < total:
        chunk = content[start : start + UPLOAD_CHUNK_BYTES]
        try:
            response = await graph.upload_fragment(upload_url, chunk, start=start, total=total)
        except GraphError as error:
            if error.status != 416:
                raise
            start = _next_offset(await graph.upload_status(upload_url), start)
            continue
        # Outlook returns 200 while ranges are missing and 201 with Location at the end.
        location = response.headers.get("location")
        if response.status == 201 or location:
            found = _ATTACHMENT_ID.search(location or "")
            return found.group(1) if found else None
        start = _next_offset(response.json or {}, start + len(chunk))
    return None


def _next_offset(status: dict[str, Any], fallback: int) -> int:
    ranges = status.get("NextExpectedRanges") or status.get("nextExpectedRanges") or []
    if not ranges:
        return fallback
    return int(str(ranges[0]).split("-", 1)[0])


def _failed(item: PlannedItem, step: str, error: Exception) -> ItemResult:
    logger.info(
        "restore of %s %s failed while %s: %s", item.workload, item.source_item_id, step, error
    )
    return ItemResult(item, Outcome.FAILED, reason=f"{step} failed: {error}")

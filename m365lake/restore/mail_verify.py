"""Read restored messages back and compare them with the archive.

Compared: subject, from, to, sent and received time (to the second), read state,
categories, that the message is no draft, and the attachments: their number and the
SHA-256 of every file attachment's bytes. An attached message (itemAttachment) is
re-rendered by Exchange from its properties, so its bytes differ from the archived MIME;
that is reported as a rewrite, not a mismatch, when the number of attached messages agrees.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from m365lake.errors import GraphError, ItemNotFoundError
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.restore.mail_json import graph_time, wrapped_message
from m365lake.restore.mail_plan import (
    IMMUTABLE_IDS,
    MailPlannedItem,
    load_archived_rows,
    row_key,
)
from m365lake.restore.model import ItemResult, Outcome, Severity, VerifyFinding
from m365lake.sources.mime import (
    AttachmentInfo,
    decoded_content,
    list_attachments,
    nesting_guard,
    parse_mime,
)

_RESTORED = frozenset({Outcome.CREATED, Outcome.RENAMED, Outcome.REPLACED})
_SELECT = "subject,from,toRecipients,sentDateTime,receivedDateTime,isDraft,isRead,categories"
VERIFY_IN_FLIGHT = 4


async def verify_mail_restore(
    lake: Lake, graph: GraphClient, results: list[ItemResult]
) -> list[VerifyFinding]:
    """Compare every message this restore created with its archived version."""
    todo = [
        result
        for result in results
        if isinstance(result.planned, MailPlannedItem)
        and result.planned.kind == "message"
        and result.outcome in _RESTORED
        and result.target_item_id
    ]
    rows = load_archived_rows(lake, [result.planned for result in todo])
    findings: list[VerifyFinding] = []
    for start in range(0, len(todo), VERIFY_IN_FLIGHT):
        window = todo[start : start + VERIFY_IN_FLIGHT]
        checks = (verify_message(lake, graph, result, rows) for result in window)
        for found in await asyncio.gather(*checks):
            findings += found
    return findings


async def verify_message(
    lake: Lake,
    graph: GraphClient,
    result: ItemResult,
    rows: dict[tuple[str, str, datetime | None], dict[str, Any]],
) -> list[VerifyFinding]:
    """Return the differences between one restored message and its archived version."""
    item = result.planned
    assert isinstance(item, MailPlannedItem)
    target_id = str(result.target_item_id)
    mailbox = item.target_container
    url = f"/users/{mailbox}/messages/{target_id}"

    def finding(
        field: str, expected: Any, actual: Any, severity: Severity = Severity.MISMATCH
    ) -> VerifyFinding:
        return VerifyFinding(
            "mail",
            item.source_item_id,
            target_id,
            field,
            None if expected is None else str(expected),
            None if actual is None else str(actual),
            severity,
        )

    try:
        live = await graph.get_json(
            url, params={"$select": _SELECT}, headers=IMMUTABLE_IDS, mailbox=mailbox
        )
        live_mime = await graph.get_bytes(url + "/$value", headers=IMMUTABLE_IDS, mailbox=mailbox)
    except ItemNotFoundError:
        return [finding("message", "present", None, Severity.MISSING)]
    except GraphError as error:
        return [finding("message", "readable", str(error), Severity.MISSING)]

    row = rows.get(row_key(item))
    if row is None:
        return [finding("archive", "archived version", None, Severity.MISSING)]
    findings = [
        finding(name, expected, actual)
        for name, expected, actual in _compare_envelope(row, live)
        if expected != actual
    ]
    archived_mime = lake.read_content(item.source_version, row.get("mime_inline"))
    findings += [
        finding(name, expected, actual, severity)
        for name, expected, actual, severity in compare_attachments(
            expected_attachments(archived_mime), list_attachments(live_mime)
        )
    ]
    return findings


def expected_attachments(archived_mime: bytes) -> list[AttachmentInfo]:
    """Return the attachments the restored copy of ``archived_mime`` should list.

    The archive does not list a message's own top-level body, but when that body is a
    whole message (message/rfc822) the restore sends it as an itemAttachment, so the
    restored copy lists one attached message more.
    """
    listed = list_attachments(archived_mime)
    with nesting_guard():
        message = parse_mime(archived_mime)
        wrapped = wrapped_message(message)
        if wrapped is None:
            return listed
        content = decoded_content(message)
    body = AttachmentInfo(
        part_index=0,
        kind="item",
        name="attached message",
        content_type="message/rfc822",
        size=len(content),
        is_inline=False,
        content_id=None,
        content_sha256=hashlib.sha256(content).hexdigest(),
    )
    return [body, *listed]


def _address(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    address = (value.get("emailAddress") or {}).get("address")
    return str(address).casefold() if address else None


def _time(value: Any) -> str | None:
    return graph_time(value) if isinstance(value, datetime) else None


def _compare_envelope(row: dict[str, Any], live: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    archived_to = sorted(str(a).casefold() for a in row.get("to_addresses") or [])
    live_to = sorted(filter(None, (_address(r) for r in live.get("toRecipients") or [])))
    from_address = row.get("from_address")
    return [
        ("subject", row.get("subject") or "", live.get("subject") or ""),
        ("from", from_address.casefold() if from_address else None, _address(live.get("from"))),
        ("to", archived_to, live_to),
        ("sent_at", _time(row.get("sent_at")), live.get("sentDateTime")),
        ("received_at", _time(row.get("received_at")), live.get("receivedDateTime")),
        ("is_draft", False, live.get("isDraft")),
        ("is_read", bool(row.get("is_read")), live.get("isRead")),
        ("categories", sorted(row.get("categories") or []), sorted(live.get("categories") or [])),
    ]


def compare_attachments(
    archived: Sequence[AttachmentInfo], live: Sequence[AttachmentInfo]
) -> list[tuple[str, str | None, str | None, Severity]]:
    """Compare attachment lists: file hashes as multisets, attached messages by count."""
    found: list[tuple[str, str | None, str | None, Severity]] = []
    if len(archived) != len(live):
        found.append(("attachment_count", str(len(archived)), str(len(live)), Severity.MISMATCH))
    archived_files = Counter(a.content_sha256 for a in archived if a.kind == "file")
    live_files = Counter(a.content_sha256 for a in live if a.kind == "file")
    names = {a.content_sha256: a.name for a in archived}
    for sha256 in sorted((archived_files - live_files).elements()):
        found.append((f"attachment:{names.get(sha256)}", sha256, None, Severity.MISMATCH))
    for sha256 in sorted((live_files - archived_files).elements()):
        found.append(("attachment:unexpected", None, sha256, Severity.MISMATCH))

    archived_items = [a for a in archived if a.kind == "item"]
    live_items = [a for a in live if a.kind == "item"]
    if len(archived_items) != len(live_items):
        found.append(
            (
                "attached_messages",
                str(len(archived_items)),
                str(len(live_items)),
                Severity.MISMATCH,
            )
        )
        return found
    live_hashes = {a.content_sha256 for a in live_items}
    for attachment in archived_items:
        if attachment.content_sha256 not in live_hashes:
            # Exchange stores an attached message as an item and renders new MIME for it.
            found.append(
                (
                    f"attachment:{attachment.name}",
                    attachment.content_sha256,
                    "re-rendered by Exchange",
                    Severity.REWRITE,
                )
            )
    return found

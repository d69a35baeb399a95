"""Rows for the mail tables, built from Graph JSON and the archived MIME."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from m365lake.lake import ContentRef
from m365lake.sources.mailboxes import Mailbox
from m365lake.sources.mime import AttachmentInfo
from m365lake.sources.rows import now_utc, parse_graph_time

# Properties requested in message delta. Everything a compliance officer filters on
# comes from Graph's own view of the message (what Outlook shows), not from
# re-parsing MIME headers, so the archive agrees with the tenant.
MESSAGE_SELECT = ",".join(
    [
        "id",
        "parentFolderId",
        "changeKey",
        "internetMessageId",
        "conversationId",
        "subject",
        "from",
        "sender",
        "toRecipients",
        "ccRecipients",
        "bccRecipients",
        "sentDateTime",
        "receivedDateTime",
        "importance",
        "isRead",
        "isDraft",
        "hasAttachments",
        "categories",
    ]
)


def _address(recipient: dict[str, Any] | None) -> str | None:
    if not recipient:
        return None
    address = (recipient.get("emailAddress") or {}).get("address")
    return str(address) if address else None


def _name(recipient: dict[str, Any] | None) -> str | None:
    if not recipient:
        return None
    name = (recipient.get("emailAddress") or {}).get("name")
    return str(name) if name else None


def _addresses(recipients: Iterable[dict[str, Any]] | None) -> list[str]:
    return [address for address in map(_address, recipients or []) if address]


def message_row(
    *,
    mailbox: Mailbox,
    message: dict[str, Any],
    folder_id: str,
    folder_path: str,
    change: str,
    run_id: str,
    content: ContentRef,
    attachment_count: int | None,
) -> dict[str, Any]:
    """Build one captured version of a message."""
    return {
        "mailbox_id": mailbox.mailbox_id,
        "message_id": message["id"],
        "change": change,
        "captured_at": now_utc(),
        "run_id": run_id,
        "deleted_at": None,
        "folder_id": folder_id,
        "folder_path": folder_path,
        "internet_message_id": message.get("internetMessageId"),
        "conversation_id": message.get("conversationId"),
        "subject": message.get("subject"),
        "from_address": _address(message.get("from")),
        "from_name": _name(message.get("from")),
        "sender_address": _address(message.get("sender")),
        "to_addresses": _addresses(message.get("toRecipients")),
        "cc_addresses": _addresses(message.get("ccRecipients")),
        "bcc_addresses": _addresses(message.get("bccRecipients")),
        "sent_at": parse_graph_time(message.get("sentDateTime")),
        "received_at": parse_graph_time(message.get("receivedDateTime")),
        "importance": message.get("importance"),
        "is_read": message.get("isRead"),
        "is_draft": message.get("isDraft"),
        "has_attachments": message.get("hasAttachments"),
        "categories": list(message.get("categories") or []),
        "change_key": message.get("changeKey"),
        "attachment_count": attachment_count,
        "size": content.size,
        "mime_sha256": content.sha256,
        "mime_inline": content.inline,
    }


def deletion_row(
    *,
    mailbox: Mailbox,
    message_id: str,
    folder_id: str | None,
    folder_path: str | None,
    run_id: str,
) -> dict[str, Any]:
    """Build the tombstone version that records when Graph reported a message gone.

    It carries the identity only, because the views join it to the last captured version.
    """
    deleted_at = now_utc()
    return {
        "mailbox_id": mailbox.mailbox_id,
        "message_id": message_id,
        "change": "deleted",
        "captured_at": deleted_at,
        "run_id": run_id,
        "deleted_at": deleted_at,
        "folder_id": folder_id,
        "folder_path": folder_path,
        "to_addresses": [],
        "cc_addresses": [],
        "bcc_addresses": [],
        "categories": [],
    }


def attachment_rows(
    *,
    mailbox: Mailbox,
    message_id: str,
    mime_sha256: str,
    run_id: str,
    attachments: Iterable[AttachmentInfo],
) -> list[dict[str, Any]]:
    captured_at = now_utc()
    return [
        {
            "mailbox_id": mailbox.mailbox_id,
            "message_id": message_id,
            "mime_sha256": mime_sha256,
            "captured_at": captured_at,
            "run_id": run_id,
            "part_index": attachment.part_index,
            "kind": attachment.kind,
            "name": attachment.name,
            "content_type": attachment.content_type,
            "size": attachment.size,
            "is_inline": attachment.is_inline,
            "content_id": attachment.content_id,
            "content_sha256": attachment.content_sha256,
        }
        for attachment in attachments
    ]


def folder_row(
    *,
    mailbox: Mailbox,
    folder_id: str,
    parent_folder_id: str | None,
    display_name: str,
    folder_path: str,
    change: str,
    run_id: str,
) -> dict[str, Any]:
    captured_at = now_utc()
    return {
        "mailbox_id": mailbox.mailbox_id,
        "folder_id": folder_id,
        "parent_folder_id": parent_folder_id,
        "display_name": display_name,
        "folder_path": folder_path,
        "change": change,
        "captured_at": captured_at,
        "run_id": run_id,
        "deleted_at": captured_at if change == "deleted" else None,
    }

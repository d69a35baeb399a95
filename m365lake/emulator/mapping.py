"""Map raw MIME bytes to the Graph message JSON and attachment list that Exchange would show.

Both public functions accept any bytes and raise no Exception: broken structure, unknown
charsets, NUL bytes and non-MIME files (Outlook .msg, TNEF) give empty or fallback values.
The stdlib parser runs with the compat32 policy because it keeps raw header text and
tolerates defects. Decoding is done by ``mimetext``.
"""

from __future__ import annotations

import base64
import email
import hashlib
import logging
import re
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from m365lake.emulator.mimeparts import (
    MAX_PART_DEPTH,
    MimeAttachment,
    all_headers,
    build_attachment,
    first_header,
    leaf_parts,
    part_is_inline,
    part_role,
    part_text,
    parts_with_role,
)
from m365lake.emulator.mimetext import (
    collapse_whitespace,
    decode_header_value,
    html_to_text,
    unfold,
)

__all__ = [
    "BODY_PREVIEW_CHARS",
    "FALLBACK_DATETIME",
    "MAX_PART_DEPTH",
    "MimeAttachment",
    "format_datetime",
    "message_properties",
    "mime_attachments",
    "parse_mime",
]

logger = logging.getLogger(__name__)

FALLBACK_DATETIME = datetime(1970, 1, 1, tzinfo=UTC)
"""receivedDateTime and sentDateTime when neither the caller nor the Date header gives one."""

BODY_PREVIEW_CHARS = 255

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_PRIORITY = {"1": "high", "2": "high", "4": "low", "5": "low"}


def parse_mime(mime: bytes) -> Message:
    """Parse MIME bytes leniently, falling back to headers only, then to an empty message.

    The stdlib parser recurses once per multipart level, so a few hundred levels of
    nesting exhaust the interpreter's recursion limit (1000 levels fail with the default).
    Such a message keeps its headers and loses its body.

    NOTE: header lines with space before the colon (obsolete RFC 822 syntax, "To : x")
    end the header block for the stdlib parser, so they and what follows become body.
    """
    try:
        return email.message_from_bytes(bytes(mime), policy=email_policy.compat32)
    except Exception as error:  # callers rely on no exception, whatever the parser hits
        logger.debug("full MIME parse failed (%s), keeping headers only", type(error).__name__)
    try:
        return BytesHeaderParser(policy=email_policy.compat32).parsebytes(bytes(mime))
    except Exception as error:
        logger.debug("MIME header parse failed (%s), using an empty message", type(error).__name__)
    return Message()


def message_properties(mime: bytes, *, received_at: datetime | None) -> dict[str, Any]:
    """Build the Graph message properties that the MIME determines.

    Properties the mailbox owns (id, parentFolderId, isRead, categories, changeKey) are
    left to the caller.
    """
    try:
        return _message_properties(parse_mime(mime), mime, received_at)
    except Exception as error:  # a mapping bug must not fail the request that needs it
        logger.warning("mapping MIME to message properties failed: %s", type(error).__name__)
        return _message_properties(Message(), b"", received_at)


def mime_attachments(mime: bytes) -> list[MimeAttachment]:
    """List the file and item attachments of a MIME message in document order."""
    try:
        message = parse_mime(mime)
        # Embedded messages are re-serialised, so keep the line ending the outer message uses.
        linesep = "\r\n" if b"\r\n" in bytes(mime[:65536]) else "\n"
        return [
            build_attachment(part, index, linesep)
            for index, part in enumerate(parts_with_role(message, "attachment"), start=1)
        ]
    except Exception as error:  # a mapping bug must not fail the request that needs it
        logger.warning("listing MIME attachments failed: %s", type(error).__name__)
        return []


def _message_properties(
    message: Message, mime: bytes, received_at: datetime | None
) -> dict[str, Any]:
    body_type, body = _body(message)
    preview_source = html_to_text(body) if body_type == "html" else collapse_whitespace(body)
    has_attachments = any(
        not part_is_inline(part) for part in parts_with_role(message, "attachment")
    )
    sent = _header_datetime(message)
    received = _utc(received_at) if received_at is not None else None
    received = received or sent or FALLBACK_DATETIME
    sender_from = _first_address(message, "from")
    internet_message_id = first_header(message, "message-id").strip() or None

    properties: dict[str, Any] = {
        "subject": decode_header_value(first_header(message, "subject")),
        "bodyPreview": preview_source[:BODY_PREVIEW_CHARS],
        "body": {"contentType": body_type, "content": body},
        "importance": _importance(message),
        "internetMessageId": internet_message_id,
        "conversationId": _conversation_id(message, mime),
        "sentDateTime": format_datetime(sent or received),
        "receivedDateTime": format_datetime(received),
        "hasAttachments": has_attachments,
        "sender": _first_address(message, "sender") or sender_from,
        "from": sender_from,
        "toRecipients": _addresses(message, "to"),
        "ccRecipients": _addresses(message, "cc"),
        "bccRecipients": _addresses(message, "bcc"),
        "replyTo": _addresses(message, "reply-to"),
        "isDraft": False,
        "isDeliveryReceiptRequested": bool(first_header(message, "return-receipt-to")),
        "isReadReceiptRequested": bool(first_header(message, "disposition-notification-to")),
        "flag": {"flagStatus": "notFlagged"},
    }
    thread_index = re.sub(r"\s+", "", unfold(first_header(message, "thread-index")))
    if thread_index:
        properties["conversationIndex"] = thread_index
    return properties


def format_datetime(value: datetime) -> str:
    """Format a UTC datetime the way Graph does: ``YYYY-MM-DDTHH:MM:SSZ``."""
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}Z"
    )


def _utc(value: datetime) -> datetime | None:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _header_datetime(message: Message) -> datetime | None:
    raw = decode_header_value(first_header(message, "date"))
    if not raw:
        return None
    try:
        parsed = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return _utc(parsed)


def _email_address(name: str, address: str) -> dict[str, Any] | None:
    name = decode_header_value(name)
    address = decode_header_value(address)
    if not name and not address:
        return None
    return {"emailAddress": {"name": name or address, "address": address}}


def _addresses(message: Message, header: str) -> list[dict[str, Any]]:
    values = [unfold(value) for value in all_headers(message, header)]
    if not values:
        return []
    try:
        pairs = getaddresses(values)
    except Exception as error:  # keep the other properties when one address list is hostile
        logger.debug("address parse of %s failed: %s", header, type(error).__name__)
        return []
    result = []
    for name, address in pairs:
        entry = _email_address(name, address)
        if entry is not None:
            result.append(entry)
    return result


def _first_address(message: Message, header: str) -> dict[str, Any] | None:
    addresses = _addresses(message, header)
    return addresses[0] if addresses else None


def _importance(message: Message) -> str:
    importance = first_header(message, "importance").strip().lower()
    if importance in ("high", "low", "normal"):
        return importance
    priority = first_header(message, "x-priority").strip()[:1]
    if priority in _PRIORITY:
        return _PRIORITY[priority]
    urgency = first_header(message, "priority").strip().lower()
    if urgency == "urgent":
        return "high"
    if urgency == "non-urgent":
        return "low"
    return "normal"


def _conversation_id(message: Message, mime: bytes) -> str:
    """Hash the thread root's Message-ID, so every reply in a thread shares one id.

    The root is the first References entry, else In-Reply-To, else the message's own
    Message-ID. A message with none of these is a conversation of its own, keyed by its
    bytes.
    """
    root = ""
    for header in ("references", "in-reply-to", "message-id"):
        value = unfold(first_header(message, header))
        found = _MESSAGE_ID.search(value)
        root = found.group(0) if found else value.strip().split(" ", 1)[0]
        if root:
            break
    key = root.encode("utf-8", errors="surrogateescape") if root else bytes(mime)
    digest = hashlib.sha256(b"conversation\x00" + key).digest()[:24]
    return "AAQk" + base64.urlsafe_b64encode(digest).decode("ascii")


def _body(message: Message) -> tuple[str, str]:
    """Return (contentType, content), preferring HTML as Graph does by default."""
    seen: set[str] = set()
    bodies: dict[str, Message] = {}
    for part in leaf_parts(message):
        role = part_role(part, seen)
        if role in ("html", "text"):
            bodies[role] = part
    if "html" in bodies:
        return "html", part_text(bodies["html"])
    if "text" in bodies:
        return "text", part_text(bodies["text"])
    return "text", ""

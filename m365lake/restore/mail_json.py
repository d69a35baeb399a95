"""Build the Graph JSON that recreates an archived message as received mail.

Graph creates a message from JSON as a draft unless PidTagMessageFlags (``Integer 0x0E07``)
is set in the same request, and it only accepts the delivery and submit times
(``SystemTime 0x0E06`` and ``SystemTime 0x0039``) at creation. A MIME create would always
give a draft, so restore sends JSON: the envelope as the archive row recorded it (Graph's
own view of the message), the body and attachments from the archived MIME.

Attachments are listed exactly as ``m365lake.sources.mime.list_attachments`` lists them for
the archive, so the restored message has the same attachments with the same bytes. Those
inside an attached message travel inside its itemAttachment. A message whose whole body is
another message (top-level message/rfc822) is restored with that message as an
itemAttachment, since a Graph message always has a text or HTML body.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses
from typing import Any

from m365lake.search.extract_mail import decode_header_value
from m365lake.search.extract_plain import decode_text
from m365lake.sources.mime import (
    MAX_DEPTH,
    AttachmentInfo,
    decoded_content,
    list_attachments,
    nesting_guard,
    parse_mime,
)

MAX_REQUEST_BYTES = 4_000_000
"""Budget for one create request; Exchange rejects bodies above 4 MB."""
SESSION_MIN_BYTES = 3_000_000
"""Files of this size and more go through an attachment upload session (3 to 150 MB).
NOTE: a file just under this size is about 4,000,000 bytes as base64, close to the request
cap. Microsoft does not say whether these limits are decimal or binary megabytes."""
READ_FLAG = 0x1
"""mfRead in PidTagMessageFlags; the unsent (draft) bit 0x8 is never set."""
RESTORE_HEADER = "X-M365lake-Restored-From"
"""Header naming the archived version a message was restored from: mailbox, id, MIME SHA-256."""
_MAX_ITEM_DEPTH = 8


@dataclass(frozen=True)
class AttachmentSource:
    """An archived attachment to send separately from the create request."""

    name: str
    content_type: str
    content: bytes
    is_inline: bool
    content_id: str | None

    @property
    def needs_session(self) -> bool:
        return len(self.content) >= SESSION_MIN_BYTES

    def file_json(self) -> dict[str, Any]:
        """Return the fileAttachment JSON for a ``POST .../attachments``."""
        return _file_attachment(self)


@dataclass
class MessageCreate:
    """A create request for one message and the attachments that follow it."""

    body: dict[str, Any]
    later: list[AttachmentSource] = field(default_factory=list)
    """Attachments too large for the create request, in archive order."""

    def size(self) -> int:
        return len(json.dumps(self.body).encode())


@dataclass(frozen=True)
class _Part:
    index: int
    part: Message
    inside_item: bool


def restore_marker(mailbox_id: str, message_id: str, mime_sha256: str) -> str:
    return f"{mailbox_id} {message_id} {mime_sha256}"


def build_create(mime: bytes, row: dict[str, Any], *, marker: str | None) -> MessageCreate:
    """Return the JSON create request for the archived ``mime`` described by ``row``.

    Attachments go into the request while it stays under ``MAX_REQUEST_BYTES``; the others
    are returned in ``later``. Raises ValueError when the message without its file
    attachments is already too large for one request, and MimeTooDeepError (a ValueError)
    when it nests too deep to parse or to write its attached messages back.
    """
    with nesting_guard():
        return _build_create(mime, row, marker=marker)


def _build_create(mime: bytes, row: dict[str, Any], *, marker: str | None) -> MessageCreate:
    message = parse_mime(mime)
    listed = {info.part_index: info for info in list_attachments(mime)}
    body = _envelope(message, row)
    body["body"] = message_body(message, set(listed))
    if marker is not None:
        # Only the marker: Graph takes at most five custom headers per message, and each
        # new X- header name uses up a named property of the mailbox's limited quota, so
        # the archived X- headers are not carried over.
        body["internetMessageHeaders"] = [{"name": RESTORE_HEADER, "value": marker}]
    body["singleValueExtendedProperties"] = _extended_properties(row)

    create = MessageCreate(body)
    files, items = _top_level_attachments(message, listed, 0)
    body["attachments"] = list(items)
    if create.size() > MAX_REQUEST_BYTES:
        raise ValueError(
            f"the message without its file attachments needs {create.size()} bytes, more "
            f"than the {MAX_REQUEST_BYTES} bytes Graph accepts in one create request"
        )
    for attachment in files:
        if attachment.needs_session:
            create.later.append(attachment)
            continue
        encoded = _file_attachment(attachment)
        # base64 plus JSON quoting: measure the real addition, not an estimate.
        added = len(json.dumps(encoded).encode()) + 2
        if create.size() + added > MAX_REQUEST_BYTES:
            create.later.append(attachment)
            continue
        body["attachments"].append(encoded)
    if not body["attachments"]:
        del body["attachments"]
    return create


def _envelope(message: Message, row: dict[str, Any]) -> dict[str, Any]:
    names = _display_names(message)
    body: dict[str, Any] = {
        "subject": row.get("subject") if row.get("subject") is not None else _subject(message),
        "importance": row.get("importance") or "normal",
        "isRead": bool(row.get("is_read")),
        "categories": list(row.get("categories") or []),
        "toRecipients": _recipients(row.get("to_addresses"), names),
        "ccRecipients": _recipients(row.get("cc_addresses"), names),
        "bccRecipients": _recipients(row.get("bcc_addresses"), names),
    }
    if row.get("from_address"):
        body["from"] = _recipient(row["from_address"], row.get("from_name") or "")
    sender = row.get("sender_address")
    if sender and sender != row.get("from_address"):
        body["sender"] = _recipient(sender, names.get(sender.casefold(), ""))
    reply_to = _header_addresses(message, "reply-to")
    if reply_to:
        body["replyTo"] = [_recipient(address, name) for name, address in reply_to]
    if row.get("internet_message_id"):
        body["internetMessageId"] = row["internet_message_id"]
    return body


def _extended_properties(row: dict[str, Any]) -> list[dict[str, str]]:
    flags = READ_FLAG if row.get("is_read") else 0
    properties = [{"id": "Integer 0x0E07", "value": str(flags)}]
    for property_id, column in (
        ("SystemTime 0x0E06", "received_at"),
        ("SystemTime 0x0039", "sent_at"),
    ):
        value = row.get(column)
        if isinstance(value, datetime):
            properties.append({"id": property_id, "value": graph_time(value)})
    return properties


def graph_time(value: datetime) -> str:
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _recipient(address: str, name: str) -> dict[str, Any]:
    email_address = {"address": address}
    if name and name != address:
        email_address["name"] = name
    return {"emailAddress": email_address}


def _recipients(addresses: Any, names: dict[str, str]) -> list[dict[str, Any]]:
    return [_recipient(str(a), names.get(str(a).casefold(), "")) for a in addresses or []]


def _header_addresses(message: Message, header: str) -> list[tuple[str, str]]:
    values = [_raw_text(value) for key, value in message.raw_items() if key.lower() == header]
    if not values:
        return []
    try:
        pairs = getaddresses(values)
    except Exception:  # a hostile address list must not stop the restore of the message
        return []
    return [(decode_header_value(name), address) for name, address in pairs if address]


def _raw_text(value: object) -> str:
    """Return a raw header value as text, decoding any 8-bit bytes it carries.

    compat32 keeps undeclared 8-bit header bytes as lone surrogates, which JSON encoded
    as UTF-8 cannot carry, so a request built from them would fail for the whole message.
    """
    text = str(value)
    if not any("\udc80" <= character <= "\udcff" for character in text):
        return text
    return decode_text(text.encode("utf-8", "surrogateescape"))


def _display_names(message: Message) -> dict[str, str]:
    """Map each address in the address headers to its display name, casefolded keys."""
    names: dict[str, str] = {}
    for header in ("from", "sender", "to", "cc", "bcc", "reply-to"):
        for name, address in _header_addresses(message, header):
            if name:
                names.setdefault(address.casefold(), name)
    return names


def _subject(message: Message) -> str:
    return decode_header_value(message.get("subject"))


def message_body(message: Message, attachments: set[int]) -> dict[str, str]:
    """Return Graph's body for the MIME: the first HTML part, else the first plain text part.

    ``attachments`` are the part indexes ``list_attachments`` reported; they are no body.
    """
    found: dict[str, str] = {}
    for entry in walk_parts(message):
        part = entry.part
        if entry.inside_item or entry.index in attachments or part.is_multipart():
            continue
        kind = part.get_content_type()
        if kind in ("text/html", "text/plain") and kind not in found:
            found[kind] = _part_text(part)
    if "text/html" in found:
        return {"contentType": "html", "content": found["text/html"]}
    return {"contentType": "text", "content": found.get("text/plain", "")}


def _part_text(part: Message) -> str:
    try:
        data = part.get_payload(decode=True)
    except (ValueError, TypeError, LookupError):
        data = None
    if not isinstance(data, bytes):
        return ""
    try:
        charset = part.get_content_charset()
    except (ValueError, LookupError):
        charset = None
    return decode_text(data, charset)


def walk_parts(message: Message) -> Iterator[_Part]:
    """Yield the parts in the order ``list_attachments`` numbers them, marking nested ones."""
    index = 0

    def walk(part: Message, depth: int, inside_item: bool) -> Iterator[_Part]:
        nonlocal index
        yield _Part(index, part, inside_item)
        index += 1
        if depth >= MAX_DEPTH or not part.is_multipart():
            return
        payload = part.get_payload()
        if not isinstance(payload, list):
            return
        nested = inside_item or part.get_content_type() == "message/rfc822"
        for child in payload:
            if isinstance(child, Message):
                yield from walk(child, depth + 1, nested)

    yield from walk(message, 0, False)


def _top_level_attachments(
    message: Message, listed: dict[int, AttachmentInfo], depth: int
) -> tuple[list[AttachmentSource], list[dict[str, Any]]]:
    """Split the outer attachments into files and itemAttachment JSON (nested messages)."""
    files: list[AttachmentSource] = []
    items: list[dict[str, Any]] = []
    wrapped = wrapped_message(message)
    if wrapped is not None:
        # The whole body is a message. Graph has no such message, so the attached message
        # becomes an itemAttachment of a message with an empty body, as Exchange stores it.
        name = _subject(wrapped) or "attached message"
        if depth < _MAX_ITEM_DEPTH:
            items.append(_item_attachment(name, wrapped, depth + 1))
        else:
            files.append(
                AttachmentSource(
                    name=name,
                    content_type="message/rfc822",
                    content=decoded_content(message),
                    is_inline=False,
                    content_id=None,
                )
            )
        return files, items
    for entry in walk_parts(message):
        info = listed.get(entry.index)
        if info is None or entry.inside_item:
            continue
        if info.kind == "item" and depth < _MAX_ITEM_DEPTH:
            inner = entry.part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                items.append(_item_attachment(info.name, inner[0], depth + 1))
                continue
        files.append(
            AttachmentSource(
                name=info.name,
                content_type=info.content_type,
                content=decoded_content(entry.part),
                is_inline=info.is_inline,
                content_id=info.content_id,
            )
        )
    return files, items


def wrapped_message(message: Message) -> Message | None:
    """Return the message that is the whole body of ``message`` (top-level message/rfc822)."""
    if message.get_content_type() != "message/rfc822":
        return None
    inner = message.get_payload()
    if isinstance(inner, list) and inner and isinstance(inner[0], Message):
        return inner[0]
    return None


def _item_attachment(name: str, inner: Message, depth: int) -> dict[str, Any]:
    """Return an itemAttachment that recreates an attached message with its own attachments."""
    inner_mime = inner.as_bytes(policy=email.policy.compat32)
    # Numbered on the re-serialised bytes, as the archive numbers the attached message.
    listed = {info.part_index: info for info in list_attachments(inner_mime)}
    inner = email.message_from_bytes(inner_mime, policy=email.policy.compat32)
    names = _display_names(inner)
    item: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.message",
        "subject": _subject(inner),
        "body": message_body(inner, set(listed)),
        "toRecipients": _header_recipients(inner, "to", names),
        "ccRecipients": _header_recipients(inner, "cc", names),
    }
    senders = _header_addresses(inner, "from")
    if senders:
        item["from"] = _recipient(senders[0][1], senders[0][0])
    message_id = str(inner.get("message-id") or "").strip()
    if message_id:
        item["internetMessageId"] = message_id
    sent = _header_date(inner)
    if sent is not None:
        item["singleValueExtendedProperties"] = [
            {"id": "SystemTime 0x0039", "value": graph_time(sent)}
        ]
    files, items = _top_level_attachments(inner, listed, depth)
    attachments = items + [_file_attachment(file) for file in files]
    if attachments:
        item["attachments"] = attachments
    return {"@odata.type": "#microsoft.graph.itemAttachment", "name": name, "item": item}


def _header_recipients(
    message: Message, header: str, names: dict[str, str]
) -> list[dict[str, Any]]:
    return [
        _recipient(address, name or names.get(address.casefold(), ""))
        for name, address in _header_addresses(message, header)
    ]


def _header_date(message: Message) -> datetime | None:
    raw = message.get("date")
    if not raw:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(str(raw))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _file_attachment(attachment: AttachmentSource) -> dict[str, Any]:
    encoded: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": attachment.name,
        "contentType": attachment.content_type,
        "contentBytes": base64.b64encode(attachment.content).decode("ascii"),
        "isInline": attachment.is_inline,
    }
    if attachment.content_id:
        encoded["contentId"] = attachment.content_id
    return encoded

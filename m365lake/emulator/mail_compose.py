"""Turn the JSON of a message create into the MIME Exchange would store for it.

The emulator keeps every message as MIME, so ``$value``, the attachment listing and a
backup read a JSON-created message like any delivered one. The JSON's extended
properties decide what only creation may set: PidTagMessageFlags (``Integer 0x0E07``:
read and draft state), PidTagMessageDeliveryTime (``SystemTime 0x0E06``: receivedDateTime)
and PidTagClientSubmitTime (``SystemTime 0x0039``: sentDateTime, the Date header).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import encoders
from email import policy as email_policy
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from typing import Any

from m365lake.emulator.mapping import parse_mime
from m365lake.emulator.protocol import GraphHTTPError

MESSAGE_FLAGS = "integer 0x0e07"
DELIVERY_TIME = "systemtime 0x0e06"
SUBMIT_TIME = "systemtime 0x0039"
CREATION_ONLY_PROPERTIES = frozenset((MESSAGE_FLAGS, DELIVERY_TIME, SUBMIT_TIME))

FLAG_READ = 0x1
FLAG_UNSENT = 0x8
"""PidTagMessageFlags bits (MS-OXCMSG): mfRead and mfUnsent, the draft bit."""

MAX_CUSTOM_HEADERS = 5
"""Custom headers Graph accepts on one message; more give InvalidInternetMessageHeaderCollection."""
FILE_ATTACHMENT = "#microsoft.graph.fileattachment"
ITEM_ATTACHMENT = "#microsoft.graph.itemattachment"
_EXTENDED_ID = re.compile(r"^\s*(\w+)\s+(0x[0-9a-fA-F]{1,4})\s*$")


@dataclass(frozen=True)
class NewAttachment:
    """One attachment from a create request; ``content`` is bytes or an item's MIME."""

    kind: str
    """``file`` or ``item``."""
    name: str
    content_type: str | None
    content: bytes
    is_inline: bool = False
    content_id: str | None = None


@dataclass
class ComposedMessage:
    """The result of a JSON create: MIME plus the state Exchange keeps outside it."""

    mime: bytes
    is_draft: bool
    is_read: bool
    received_at: datetime | None
    categories: tuple[str, ...] = ()
    attachments: list[NewAttachment] = field(default_factory=list)


def bad_request(message: str, code: str = "ErrorInvalidRequest") -> GraphHTTPError:
    return GraphHTTPError(400, code, message)


def compose_message(body: dict[str, Any], *, now: datetime) -> ComposedMessage:
    """Validate a message create body and build its MIME and creation state."""
    properties = extended_properties(body)
    flags = _flags(properties.get(MESSAGE_FLAGS))
    # Without PidTagMessageFlags at creation Exchange saves an unsent item: a draft.
    is_draft = flags is None or bool(flags & FLAG_UNSENT)
    if "isRead" in body:
        is_read = bool(body["isRead"])
    elif flags is None:
        is_read = True  # Graph returns new drafts as read.
    else:
        is_read = bool(flags & FLAG_READ)
    received = _system_time(properties.get(DELIVERY_TIME), DELIVERY_TIME)
    sent = _system_time(properties.get(SUBMIT_TIME), SUBMIT_TIME)
    attachments = [parse_attachment(item) for item in _list(body, "attachments")]
    mime = build_mime(body, attachments, date=sent or received or now)
    categories = tuple(str(value) for value in _list(body, "categories"))
    return ComposedMessage(
        mime=mime,
        is_draft=is_draft,
        is_read=is_read,
        received_at=received or now,
        categories=categories,
        attachments=attachments,
    )


def extended_properties(body: dict[str, Any]) -> dict[str, Any]:
    """Return ``singleValueExtendedProperties`` keyed by normalised id (``integer 0x0e07``)."""
    found: dict[str, Any] = {}
    for item in _list(body, "singleValueExtendedProperties"):
        if not isinstance(item, dict) or "id" not in item or "value" not in item:
            raise bad_request("Each singleValueExtendedProperty needs an 'id' and a 'value'.")
        match = _EXTENDED_ID.match(str(item["id"]))
        if match is None:
            # Named properties ("String {guid} Name X") are accepted and not interpreted.
            found[str(item["id"]).lower()] = item["value"]
            continue
        found[f"{match.group(1).lower()} 0x{int(match.group(2), 16):04x}"] = item["value"]
    return found


def _flags(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value), 10)
    except ValueError:
        raise bad_request(
            f"The value '{value}' of extended property 'Integer 0x0E07' is not an integer.",
            "ErrorInvalidExtendedPropertyValue",
        ) from None


def _system_time(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(
            f"The value '{value}' of extended property '{name}' is not a date and time.",
            "ErrorInvalidExtendedPropertyValue",
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _list(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_request(f"The property '{key}' must be a collection.")
    return value


def parse_attachment(item: Any) -> NewAttachment:
    """Validate one attachment of a create or ``POST .../attachments`` body."""
    if not isinstance(item, dict):
        raise bad_request("An attachment must be a JSON object.")
    kind = str(item.get("@odata.type", "")).lower()
    name = str(item.get("name") or "")
    if kind == FILE_ATTACHMENT:
        try:
            content = base64.b64decode(str(item.get("contentBytes") or ""), validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(
                f"The contentBytes of attachment '{name}' is not valid base64."
            ) from None
        return NewAttachment(
            kind="file",
            name=name or "Untitled attachment",
            content_type=item.get("contentType") or None,
            content=content,
            is_inline=bool(item.get("isInline")),
            content_id=item.get("contentId") or None,
        )
    if kind == ITEM_ATTACHMENT:
        nested = item.get("item")
        if not isinstance(nested, dict):
            raise bad_request(f"The itemAttachment '{name}' has no 'item'.")
        nested_type = str(nested.get("@odata.type", "#microsoft.graph.message")).lower()
        if nested_type.lstrip("#") != "microsoft.graph.message":
            raise bad_request(
                f"The emulator supports only messages in item attachments, not {nested_type}."
            )
        date = _system_time(extended_properties(nested).get(SUBMIT_TIME), SUBMIT_TIME)
        inner = [parse_attachment(part) for part in _list(nested, "attachments")]
        mime = build_mime(nested, inner, date=date)
        return NewAttachment(
            kind="item",
            name=name or str(nested.get("subject") or "Untitled"),
            content_type="message/rfc822",
            content=mime,
        )
    raise bad_request(
        f"The attachment type '{item.get('@odata.type')}' is not supported; use "
        "#microsoft.graph.fileAttachment or #microsoft.graph.itemAttachment."
    )


def build_mime(
    body: dict[str, Any], attachments: list[NewAttachment], *, date: datetime | None
) -> bytes:
    """Build CRLF MIME from message JSON: headers, the body part and the attachments."""
    text_part = _body_part(body.get("body"))
    if attachments:
        message: Message = MIMEMultipart("mixed")
        message.attach(text_part)
        for attachment in attachments:
            message.attach(attachment_part(attachment))
    else:
        message = text_part
    _prepend_headers(message, _headers(body, date))
    return to_bytes(message)


def _prepend_headers(message: Message, headers: list[tuple[str, str]]) -> None:
    """Put ``headers`` ahead of the Content-* headers the MIME classes already set."""
    existing = list(message.items())
    for name in {name for name, _ in existing}:
        del message[name]
    for name, value in [*headers, *existing]:
        message[name] = value


def to_bytes(message: Message) -> bytes:
    """Serialise ``message`` with CRLF line ends and unfolded headers."""
    buffer = io.BytesIO()
    generator = BytesGenerator(
        buffer,
        mangle_from_=False,
        maxheaderlen=0,
        policy=email_policy.compat32.clone(linesep="\r\n"),
    )
    generator.flatten(message)
    return buffer.getvalue()


def _headers(body: dict[str, Any], date: datetime | None) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    sender = _address_list(body.get("from"))
    if sender:
        headers.append(("From", sender))
    explicit_sender = _address_list(body.get("sender"))
    if explicit_sender and explicit_sender != sender:
        headers.append(("Sender", explicit_sender))
    for key, header in (
        ("toRecipients", "To"),
        ("ccRecipients", "Cc"),
        ("bccRecipients", "Bcc"),
        ("replyTo", "Reply-To"),
    ):
        value = _address_list(body.get(key))
        if value:
            headers.append((header, value))
    headers.append(("Subject", _header_text(str(body.get("subject") or ""))))
    if date is not None:
        headers.append(("Date", format_datetime(date.astimezone(UTC))))
    message_id = _clean(str(body.get("internetMessageId") or ""))
    if message_id:
        headers.append(("Message-ID", message_id))
    importance = str(body.get("importance") or "normal").lower()
    if importance in ("high", "low"):
        headers.append(("Importance", importance))
    custom = _list(body, "internetMessageHeaders")
    if len(custom) > MAX_CUSTOM_HEADERS:
        raise bad_request(
            "Maximum number of headers in one message should be less than or equal to 5.",
            "InvalidInternetMessageHeaderCollection",
        )
    for header in custom:
        name = str(header.get("name", "")) if isinstance(header, dict) else ""
        if not name.lower().startswith("x-"):
            raise bad_request(
                f"The internet message header name '{name}' should start with 'x-' or 'X-'.",
                "InvalidInternetMessageHeader",
            )
        headers.append((name, _header_text(str(header.get("value") or ""))))
    return headers


def _address_list(value: Any) -> str:
    recipients = value if isinstance(value, list) else [value]
    rendered: list[str] = []
    for recipient in recipients:
        if not recipient:
            continue
        email_address = recipient.get("emailAddress") if isinstance(recipient, dict) else None
        if not isinstance(email_address, dict):
            raise bad_request("A recipient must be {'emailAddress': {'address': ...}}.")
        address = _clean(str(email_address.get("address") or ""))
        name = _clean(str(email_address.get("name") or ""))
        if name and name != address:
            rendered.append(_named_address(name, address))
        elif address:
            # Angle brackets keep an address with spaces in one piece for header parsers.
            rendered.append(f"<{address}>" if " " in address else address)
    return _raw_utf8(", ".join(rendered))


def _named_address(name: str, address: str) -> str:
    if address.isascii():
        return formataddr((name, address), charset="utf-8")
    # formataddr refuses a non-ASCII address; the name still goes as an encoded word.
    encoded_name = formataddr((name, "x@x"), charset="utf-8").rsplit(" <", 1)[0]
    return f"{encoded_name} <{address}>"


def _raw_utf8(value: str) -> str:
    """Return ``value`` so that the compat32 generator writes it as raw UTF-8 (RFC 6532).

    Given a non-ASCII str, compat32 encodes the whole header as one RFC 2047 word, which
    a reader can no longer split into addresses. Surrogate escapes are written as bytes.
    """
    if value.isascii():
        return value
    return value.encode("utf-8").decode("ascii", "surrogateescape")


def _clean(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ").strip()


def _header_text(value: str) -> str:
    value = _clean(value)
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(maxlinelen=10_000)


def _body_part(body: Any) -> Message:
    content_type = "text"
    content = ""
    if isinstance(body, dict):
        content_type = str(body.get("contentType") or "text").lower()
        content = str(body.get("content") or "")
    subtype = "html" if content_type == "html" else "plain"
    return MIMEText(content, subtype, "utf-8")


def attachment_part(attachment: NewAttachment) -> Message:
    """Return the MIME part of one attachment: base64 bytes, or message/rfc822 for an item."""
    part: Message
    if attachment.kind == "item":
        part = MIMEMessage(parse_mime(attachment.content))
        part.add_header("Content-Disposition", "attachment", filename=_param(attachment.name))
        return part
    maintype, _, subtype = (attachment.content_type or "application/octet-stream").partition("/")
    part = MIMEBase(maintype or "application", subtype or "octet-stream")
    part.set_payload(attachment.content)
    encoders.encode_base64(part)
    disposition = "inline" if attachment.is_inline else "attachment"
    part.add_header("Content-Disposition", disposition, filename=_param(attachment.name))
    if attachment.content_id:
        part.add_header("Content-ID", f"<{_clean(attachment.content_id).strip('<>')}>")
    return part


def _param(name: str) -> str | tuple[str, str, str]:
    # Non-ASCII file names travel as RFC 2231 parameters, as Exchange writes them.
    name = _clean(name)
    return name if name.isascii() else ("utf-8", "", name)


def add_attachment(mime: bytes, attachment: NewAttachment) -> bytes:
    """Return ``mime`` with one more attachment, wrapping a single part in multipart/mixed."""
    message = parse_mime(mime)
    if message.get_content_type() != "multipart/mixed" or not message.is_multipart():
        body = Message()
        for name, value in message.items():
            if name.lower().startswith("content-"):
                body[name] = value
        body.set_payload(message.get_payload())
        wrapper = MIMEMultipart("mixed")
        kept = [(n, v) for n, v in message.items() if not n.lower().startswith("content-")]
        del wrapper["MIME-Version"]
        _prepend_headers(wrapper, kept)
        wrapper.attach(body)
        message = wrapper
    message.attach(attachment_part(attachment))
    return to_bytes(message)

"""Walk the parts of a parsed MIME message and classify them the way Exchange does.

A leaf part is the HTML or text body, an attachment, or ignored (further inline text
parts, an unsplit multipart). Attached messages (message/rfc822) are item attachments
and are not entered.

NOTE: winmail.dat (application/ms-tnef) and S/MIME blobs (smime.p7m, smime.p7s) are listed
as plain file attachments. Exchange unpacks TNEF and handles S/MIME itself, so its list
for such messages differs.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy as email_policy
from email.generator import BytesGenerator
from email.message import Message
from typing import Literal

from m365lake.emulator.mimetext import decode_bytes, decode_header_value

logger = logging.getLogger(__name__)

MAX_PART_DEPTH = 64
"""Parts nested deeper than this are not walked. Real mail nests a few levels, and the cap
keeps hostile input with thousands of levels cheap to walk."""

ITEM_TYPES = frozenset({"message/rfc822", "message/global"})

Role = Literal["html", "text", "attachment", "ignored"]


@dataclass(frozen=True)
class MimeAttachment:
    """One attachment as Graph lists it: a fileAttachment or an itemAttachment."""

    kind: Literal["file", "item"]
    """``item`` for an attached message (message/rfc822), ``file`` for everything else."""
    name: str
    content_type: str | None
    size: int
    """Length of ``content`` in bytes."""
    is_inline: bool
    content_id: str | None
    """Content-ID without angle brackets, or None."""
    content: bytes
    """Decoded bytes for a file, the embedded message's MIME for an item."""


def first_header(message: Message, name: str) -> str:
    """Return the first raw value of header ``name`` (surrogate-escaped, still folded)."""
    for key, value in message.raw_items():
        if key.lower() == name:
            return str(value)
    return ""


def all_headers(message: Message, name: str) -> list[str]:
    return [str(value) for key, value in message.raw_items() if key.lower() == name]


def part_content_type(part: Message) -> str:
    try:
        return str(part.get_content_type()).lower()
    except Exception:  # odd Content-Type headers can upset the param parser
        return "application/octet-stream"


def part_disposition(part: Message) -> str:
    raw = decode_header_value(first_header(part, "content-disposition"))
    return raw.split(";", 1)[0].strip().lower()


def part_filename(part: Message) -> str:
    """Return the attachment file name: RFC 2231 parameters, then RFC 2047 words, decoded.

    compat32 turns raw 8-bit header bytes into U+FFFD before parsing parameters, so the
    two headers are first decoded as UTF-8 (or Windows-1252) into a scratch message.
    """
    scratch = Message()
    for header in ("content-disposition", "content-type"):
        raw = first_header(part, header)
        if raw:
            data = raw.encode("utf-8", errors="surrogateescape")
            scratch[header] = decode_bytes(data, None).replace("\x00", "")
    try:
        name = scratch.get_filename()
    except Exception:  # RFC 2231 parameters with broken continuations or charsets
        name = None
    return decode_header_value(name) if name else ""


def part_is_inline(part: Message) -> bool:
    if part_content_type(part) in ITEM_TYPES:
        return False
    return part_disposition(part) != "attachment" and bool(part_content_id(part))


def part_content_id(part: Message) -> str | None:
    value = decode_header_value(first_header(part, "content-id")).strip().strip("<>").strip()
    return value or None


def leaf_parts(message: Message) -> Iterator[Message]:
    """Yield the non-multipart parts in document order, not entering attached messages."""
    stack: list[tuple[Message, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        payload = part.get_payload()
        if part_content_type(part).startswith("multipart/") and isinstance(payload, list):
            if depth >= MAX_PART_DEPTH:
                logger.debug("MIME parts nested deeper than %d levels skipped", MAX_PART_DEPTH)
                continue
            children = [child for child in payload if isinstance(child, Message)]
            stack.extend((child, depth + 1) for child in reversed(children))
        else:
            yield part


def part_role(part: Message, seen: set[str]) -> Role:
    """Classify a leaf part. ``seen`` records which body roles earlier parts already took."""
    content_type = part_content_type(part)
    maintype = content_type.split("/", 1)[0]
    if content_type in ITEM_TYPES or part_disposition(part) == "attachment":
        return "attachment"
    if maintype == "multipart":
        return "ignored"  # a multipart whose body never split into parts
    if maintype == "text" and not part_filename(part):
        body_role: Role = "html" if content_type == "text/html" else "text"
        if content_type in ("text/html", "text/plain") and body_role not in seen:
            seen.add(body_role)
            return body_role
        return "ignored"
    return "attachment"


def parts_with_role(message: Message, role: Role) -> Iterator[Message]:
    seen: set[str] = set()
    for part in leaf_parts(message):
        if part_role(part, seen) == role:
            yield part


def part_text(part: Message) -> str:
    try:
        data = part.get_payload(decode=True)
    except Exception:  # a broken transfer encoding leaves the body unreadable
        return ""
    if not isinstance(data, bytes):
        return ""
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    return decode_bytes(data, charset)


def _serialize(message: Message, linesep: str) -> bytes:
    buffer = io.BytesIO()
    generator = BytesGenerator(
        buffer,
        mangle_from_=False,
        maxheaderlen=0,
        policy=email_policy.compat32.clone(linesep=linesep),
    )
    generator.flatten(message)
    return buffer.getvalue()


def _attachment_content(part: Message, content_type: str, linesep: str) -> bytes:
    payload = part.get_payload()
    if content_type in ITEM_TYPES:
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return _serialize(payload[0], linesep)
        data = part.get_payload(decode=True)
        return data if isinstance(data, bytes) else b""
    if isinstance(payload, list):
        # message/delivery-status and similar: the parser split the body into header blocks.
        whole = _serialize(part, linesep)
        blank_line = (linesep * 2).encode("ascii")
        separator = whole.find(blank_line)
        return whole[separator + len(blank_line) :] if separator >= 0 else b""
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def build_attachment(part: Message, index: int, linesep: str) -> MimeAttachment:
    content_type = part_content_type(part)
    is_item = content_type in ITEM_TYPES
    try:
        content = _attachment_content(part, content_type, linesep)
    except Exception as error:  # the generator can fail on malformed embedded messages
        logger.debug("attachment %d content unreadable: %s", index, type(error).__name__)
        content = b""
    name = part_filename(part)
    if not name and is_item:
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            name = decode_header_value(first_header(payload[0], "subject"))
        name = name or "Untitled"
    if not name:
        name = f"ATT{index:05d}.dat"
    return MimeAttachment(
        kind="item" if is_item else "file",
        name=name,
        content_type=content_type,
        size=len(content),
        is_inline=part_is_inline(part),
        content_id=part_content_id(part),
        content=content,
    )

"""Attachment inventory of an archived message, read from its MIME.

The archive keeps each message's MIME byte-exact, so attachment bytes already live
inside it. This module lists them (name, type, size, SHA-256 of the decoded content)
for the ``attachments`` table and extracts one again on demand, so content is never
stored twice.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message

log = logging.getLogger(__name__)

# Real mail rarely nests deeper than a handful of levels; hostile mail nests
# thousands deep to exhaust the parser or the stack.
MAX_DEPTH = 50
MAX_PARTS = 2_000


class MimeTooDeepError(ValueError):
    """The MIME nests more levels than the email package can parse or write back."""


@contextlib.contextmanager
def nesting_guard() -> Iterator[None]:
    """Turn the email package's RecursionError on deeply nested MIME into MimeTooDeepError.

    The parser and the generator recurse once or more per nested part. With CPython
    3.11's default limit, parsing failed near 1,000 levels and writing an attached
    message back out failed at 400 (measured, not documented).
    """
    try:
        yield
    except RecursionError:
        raise MimeTooDeepError(
            "the MIME nests parts or attached messages deeper than the email parser can "
            "follow (Python's recursion limit); the archived bytes are intact, so open the "
            "native .eml in a mail client to read it"
        ) from None


def parse_mime(mime: bytes) -> Message:
    """Parse ``mime`` with compat32, which records defects; raises MimeTooDeepError."""
    with nesting_guard():
        return email.message_from_bytes(mime, policy=email.policy.compat32)


@dataclass(frozen=True)
class AttachmentInfo:
    """One attachment found in a message's MIME."""

    part_index: int
    """Position of the part in a depth-first walk; stable for the same MIME bytes."""
    kind: str
    """``file`` for ordinary parts, ``item`` for an attached message (message/rfc822)."""
    name: str
    content_type: str
    size: int
    is_inline: bool
    content_id: str | None
    content_sha256: str


def _walk(message: Message, depth: int = 0) -> Iterator[Message]:
    """Yield parts depth-first without descending into attached messages."""
    yield message
    if depth >= MAX_DEPTH or not message.is_multipart():
        return
    payload = message.get_payload()
    if not isinstance(payload, list):
        return
    for child in payload:
        if isinstance(child, Message):
            yield from _walk(child, depth + 1)


def _part_name(part: Message) -> str | None:
    try:
        name = part.get_filename() or part.get_param("name")
    except (ValueError, LookupError, TypeError):
        return None
    if isinstance(name, tuple):
        # RFC 2231 value that the parser could not decode: keep its raw text.
        name = name[2]
    return str(name) if name else None


def _is_attachment(part: Message, name: str | None) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment":
        return True
    if part.get_content_type() == "message/rfc822":
        return True
    return name is not None and not part.is_multipart()


def decoded_content(part: Message) -> bytes:
    """Return the decoded bytes of a part, or the embedded message of a message/rfc822 part."""
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return inner[0].as_bytes(policy=email.policy.compat32)
        return b""
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, TypeError, LookupError):
        payload = None
    return payload if isinstance(payload, bytes) else b""


def list_attachments(mime: bytes) -> list[AttachmentInfo]:
    """Return the attachments of ``mime``; malformed MIME yields what could be read.

    Raises MimeTooDeepError when the MIME nests too deep to parse at all.
    """
    if not has_subparts(mime):
        return []
    return [info for info, _ in read_attachments(mime)]


# Any blank line ends the header block. The email parser splits lines on CR, LF and CRLF,
# so a blank line starts at the first of these pairs.
_BLANK_LINE_STARTS = (b"\n\n", b"\n\r", b"\r\r")
# The parser takes the main type from the literal text of Content-Type, so a header block
# without these words cannot make a message multipart or message/*.
_MAY_HAVE_PARTS = re.compile(rb"multipart|message\s*/", re.IGNORECASE)


def has_subparts(mime: bytes) -> bool:
    """Return whether the parser would give ``mime`` parts: multipart/* or message/*.

    Only the header block is read, and parsed with the same parser when it names either
    type, so the result matches a full parse. A single-part message has no
    attachments, because the walk skips the top-level part.
    """
    ends = [position for marker in _BLANK_LINE_STARTS if (position := mime.find(marker)) >= 0]
    header_block = mime[: min(ends) + 1] if ends else mime
    if not _MAY_HAVE_PARTS.search(header_block):
        return False
    headers = email.message_from_bytes(header_block, policy=email.policy.compat32)
    return headers.get_content_maintype() in ("multipart", "message")


def read_attachments(mime: bytes) -> list[tuple[AttachmentInfo, bytes]]:
    """Return each attachment of ``mime`` with its decoded content, from one parse.

    Reading them one by one with ``extract_attachment`` parses the message again for
    each, which is quadratic for a message with thousands of parts.
    """
    with nesting_guard():
        return _read_attachments(parse_mime(mime))


def _read_attachments(message: Message) -> list[tuple[AttachmentInfo, bytes]]:
    found: list[tuple[AttachmentInfo, bytes]] = []
    for index, part in enumerate(_walk(message)):
        if index >= MAX_PARTS:
            log.info("attachment walk stopped after %d parts", MAX_PARTS)
            break
        if index == 0:
            continue
        name = _part_name(part)
        if not _is_attachment(part, name):
            continue
        content = decoded_content(part)
        content_id = part.get("Content-ID")
        is_rfc822 = part.get_content_type() == "message/rfc822"
        info = AttachmentInfo(
            part_index=index,
            kind="item" if is_rfc822 else "file",
            name=name or ("attached message" if is_rfc822 else f"part-{index}"),
            content_type=part.get_content_type(),
            size=len(content),
            is_inline=(part.get_content_disposition() or "").lower() == "inline",
            content_id=str(content_id).strip("<> ") if content_id else None,
            content_sha256=hashlib.sha256(content).hexdigest(),
        )
        found.append((info, content))
    return found


def extract_attachment(mime: bytes, part_index: int) -> bytes:
    """Return the decoded content of the part at ``part_index`` of ``mime``."""
    message = parse_mime(mime)
    for index, part in enumerate(_walk(message)):
        if index == part_index:
            with nesting_guard():
                return decoded_content(part)
    raise KeyError(f"no MIME part {part_index} in this message")

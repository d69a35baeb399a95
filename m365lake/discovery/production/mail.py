"""Read what a production needs from a message's MIME: attachments, body hash, headers.

Attachments are found and numbered by ``m365lake.sources.mime``, the code that filled the
``attachments`` table when the message was archived, so a family member is the same
part the archive lists.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import email.utils
import logging
from dataclasses import dataclass, field

from m365lake.discovery.production.dedup import body_sha256
from m365lake.search.extract_mail import decode_header_value
from m365lake.sources.mime import (
    AttachmentInfo,
    parse_mime,
    read_attachments,
)

logger = logging.getLogger(__name__)

_ADDRESS_HEADERS = ("From", "Sender", "To", "Cc", "Bcc", "Reply-To")
# Characters that make a display name ambiguous in an address list, as in RFC 5322.
_SPECIALS = frozenset('()<>[]:;@\\,."')

MAX_PARSED_MESSAGE_BYTES = 256 * 1024 * 1024
"""Messages up to this size are parsed in memory for their attachments and body.

Exchange Online accepts messages of at most 150 MB, and the mail backup already keeps a
message's whole MIME in memory. A larger message is produced as its native alone, and
the chain-of-custody report lists it as an item whose attachments were not produced.
"""


@dataclass(frozen=True)
class Attachment:
    """One attachment of a message, decoded."""

    info: AttachmentInfo
    content: bytes


@dataclass
class ParsedMessage:
    """The parts of a message a production uses."""

    body_sha256: str
    in_reply_to: str | None
    names: dict[str, str]
    """Display names by lowercased address, from the address headers."""
    attachments: list[Attachment] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """One message per attachment that could not be decoded and is left out."""


def parse_message(mime: bytes) -> ParsedMessage:
    """Parse ``mime`` (compat32 records defects instead of raising) and decode its attachments.

    A multipart message is parsed a second time to read its attachments, all at once.
    Raises MimeTooDeepError when the message nests too deep to parse.
    """
    message = parse_mime(mime)
    in_reply_to = decode_header_value(message.get("In-Reply-To") or "").strip()
    parsed = ParsedMessage(
        body_sha256=body_sha256(message),
        in_reply_to=in_reply_to or None,
        names=display_names(message),
    )
    if not message.is_multipart():
        return parsed
    parsed.attachments = [Attachment(info, content) for info, content in read_attachments(mime)]
    return parsed


def display_names(message: email.message.Message) -> dict[str, str]:
    """Return display names by lowercased address, from the address headers.

    The names complete the addresses Graph reported, so a header that cannot be decoded
    is skipped rather than failing the message.
    """
    names: dict[str, str] = {}
    for header in _ADDRESS_HEADERS:
        # Split the raw header first: a decoded name may contain a comma.
        values = [str(value) for value in message.get_all(header, [])]
        for raw_name, address in email.utils.getaddresses(values):
            name = decode_header_value(raw_name) if raw_name else ""
            if name and address:
                names.setdefault(address.lower(), name)
    return names


def mailbox_text(address: str | None, name: str | None, names: dict[str, str]) -> str:
    """Return ``Name <address>``, the address alone when no name is known, or ""."""
    if not address:
        return name or ""
    name = name or names.get(address.lower())
    if not name or name.lower() == address.lower():
        return address
    if any(character in name for character in _SPECIALS):
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" <{address}>'
    return f"{name} <{address}>"

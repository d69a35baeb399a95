"""Body and attachment text of RFC 5322 (MIME) messages.

The parser runs with the ``compat32`` policy, which keeps header values as raw strings
instead of parsing them when they are read, so a malformed header cannot raise. Headers
are decoded here, with lenient fallbacks.
"""

from __future__ import annotations

import email
import email.header
import email.message
import email.policy
import email.utils
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from m365lake.search.extract_plain import decode_text, html_to_text
from m365lake.search.extract_smime import cms_kind, signed_content
from m365lake.search.extract_types import (
    AttachmentText,
    Extraction,
    ExtractionStatus,
    MessageText,
    failure,
    finish,
)

logger = logging.getLogger(__name__)

# Extracts one attachment: (data, filename, content type, max_chars, depth) -> Extraction.
NestedExtractor = Callable[[bytes, str | None, str | None, int, int], Extraction]

_HEADERS_SHOWN = ("Subject", "From", "To", "Cc", "Bcc", "Date")
_PKCS7_MIME_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
# MIME parts nested deeper than this are not walked. Real mail nests a few levels, and
# hostile mail nesting thousands would exhaust Python's recursion limit.
MAX_MIME_DEPTH = 50


@dataclass
class _Walk:
    body: list[str] = field(default_factory=list)
    """Text of the inline body parts in message order, HTML already converted."""
    attachments: list[email.message.Message] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def decode_header_value(value: object) -> str:
    """Decode an RFC 2047 header value, falling back to the raw text when it is invalid."""
    if value is None:
        return ""
    try:
        if isinstance(value, email.header.Header):
            # compat32 wraps raw 8-bit header bytes in a Header ("unknown-8bit"), and str()
            # of that Header replaces them with U+FFFD.
            parts = email.header.decode_header(value)
        else:
            parts = email.header.decode_header(str(value))
    except Exception:
        return " ".join(str(value).split())
    decoded: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            known = charset if charset and charset != "unknown-8bit" else None
            decoded.append(decode_text(chunk, known))
        else:
            decoded.append(chunk)
    return " ".join("".join(decoded).split())


def parse_message(data: bytes) -> email.message.Message:
    """Parse MIME bytes. Any input parses, because compat32 records defects instead."""
    return email.message_from_bytes(data, policy=email.policy.compat32)


def extract_mime_message(
    data: bytes, *, max_chars: int, depth: int, extract_nested: NestedExtractor
) -> MessageText:
    """Extract the body and the attachments of a MIME message."""
    message = parse_message(data)
    return _message_text(message, max_chars=max_chars, depth=depth, extract_nested=extract_nested)


def _message_text(
    message: email.message.Message, *, max_chars: int, depth: int, extract_nested: NestedExtractor
) -> MessageText:
    walk = _Walk()
    _walk_part(message, walk, 0)
    body_extraction = _body_extraction(walk, max_chars=max_chars)
    attachments = [
        _attachment_text(part, max_chars=max_chars, depth=depth, extract_nested=extract_nested)
        for part in walk.attachments
    ]
    return MessageText(
        body=body_extraction.text, body_extraction=body_extraction, attachments=attachments
    )


def _walk_part(part: email.message.Message, walk: _Walk, level: int) -> None:
    if level > MAX_MIME_DEPTH:
        walk.problems.append(f"MIME parts nested deeper than {MAX_MIME_DEPTH} levels were skipped")
        return
    content_type = part.get_content_type()
    if part.is_multipart() and content_type != "message/rfc822":
        children = part.get_payload()
        if not isinstance(children, list):
            return
        if content_type == "multipart/alternative":
            _walk_alternative(children, walk, level)
            return
        if content_type == "multipart/encrypted":
            walk.problems.append("the message is encrypted (PGP/MIME)")
        for child in children:
            if isinstance(child, email.message.Message):
                _walk_part(child, walk, level + 1)
        return
    if content_type in _PKCS7_MIME_TYPES:
        _walk_pkcs7(part, walk, level)
        return
    if _is_attachment(part):
        walk.attachments.append(part)
        return
    if content_type == "text/plain":
        walk.body.append(_part_text(part))
    elif content_type == "text/html":
        walk.body.append(html_to_text(_part_text(part))[0])
    else:
        walk.attachments.append(part)


def _walk_pkcs7(part: email.message.Message, walk: _Walk, level: int) -> None:
    """Walk the MIME entity inside an opaque-signed S/MIME part, or note an encrypted one."""
    data = _payload_bytes(part)
    kind = cms_kind(data)
    if kind == "signed":
        content = signed_content(data)
        if content is not None:
            _walk_part(parse_message(content), walk, level + 1)
            return
    elif kind == "encrypted":
        walk.problems.append("the message is encrypted (S/MIME)")
    walk.attachments.append(part)


def _walk_alternative(children: Sequence[object], walk: _Walk, level: int) -> None:
    parts = [child for child in children if isinstance(child, email.message.Message)]
    plain = [p for p in parts if p.get_content_type() == "text/plain" and not _is_attachment(p)]
    html = [p for p in parts if p.get_content_type() == "text/html" and not _is_attachment(p)]
    # Prefer the plain rendering, unless it is blank and the HTML one is not (some mailers
    # send an empty text/plain beside the real HTML body).
    plain_text = _part_text(plain[0]) if plain else ""
    rendering = ""
    if plain_text.strip():
        rendering = plain_text
    elif html:
        rendering = html_to_text(_part_text(html[0]))[0]
    # Other alternatives still carry content: calendar invitations, and multipart/related
    # parts holding the HTML rendering with its inline images. Their attachments count,
    # but their body text only when no rendering was found above, so it is not doubled.
    for other in parts:
        if other in plain[:1] or other in html[:1]:
            continue
        inner = _Walk()
        _walk_part(other, inner, level + 1)
        walk.attachments.extend(inner.attachments)
        walk.problems.extend(inner.problems)
        if not rendering.strip():
            rendering = "\n\n".join(inner.body)
    walk.body.append(rendering)


def _is_attachment(part: email.message.Message) -> bool:
    disposition = str(part.get("Content-Disposition") or "").split(";")[0].strip().lower()
    if disposition == "attachment":
        return True
    if part.get_content_type() in ("text/plain", "text/html") and not _filename(part):
        return False
    return bool(_filename(part)) or part.get_content_maintype() != "text"


def _filename(part: email.message.Message) -> str | None:
    try:
        name = part.get_filename()
        headers = [part.get(h) for h in ("Content-Disposition", "Content-Type")]
        if name and any(isinstance(h, email.header.Header) for h in headers):
            # Parameters with raw 8-bit bytes: decode the headers first, then re-parse.
            probe = email.message.Message()
            for header, value in zip(("Content-Disposition", "Content-Type"), headers, strict=True):
                if value is not None:
                    probe[header] = decode_header_value(value)
            name = probe.get_filename() or name
    except Exception:
        name = None
    if name is None:
        return None
    return decode_header_value(name) or None


def _payload_bytes(part: email.message.Message) -> bytes:
    if part.get_content_type() == "message/rfc822" or part.is_multipart():
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
            try:
                return payload[0].as_bytes(policy=email.policy.compat32)
            except Exception:
                return bytes(str(payload[0]), "utf-8", errors="replace")
        return b""
    try:
        decoded = part.get_payload(decode=True)
    except Exception:
        decoded = None
    if isinstance(decoded, bytes):
        return decoded
    raw = part.get_payload()
    return raw.encode("utf-8", errors="replace") if isinstance(raw, str) else b""


def _part_text(part: email.message.Message) -> str:
    data = _payload_bytes(part)
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    return decode_text(data, charset)


def _body_extraction(walk: _Walk, *, max_chars: int) -> Extraction:
    text = "\n\n".join(part for part in walk.body if part.strip())
    result = finish(text, max_chars=max_chars)
    if walk.problems and result.status in ("ok", "empty"):
        encrypted = "encrypted" in walk.problems[0]
        status: ExtractionStatus = "encrypted" if encrypted else "corrupt"
        return Extraction(text=result.text, status=status, reason="; ".join(walk.problems))
    return result


def _attachment_text(
    part: email.message.Message, *, max_chars: int, depth: int, extract_nested: NestedExtractor
) -> AttachmentText:
    try:
        return _read_attachment(
            part, max_chars=max_chars, depth=depth, extract_nested=extract_nested
        )
    except Exception as error:
        # One malformed part must not hide the message's other attachments.
        logger.warning("attachment could not be read: %s: %s", type(error).__name__, error)
        extraction = failure(
            "corrupt", f"the attachment's MIME part cannot be decoded ({type(error).__name__})"
        )
        return AttachmentText(name=None, content_type=None, size=0, extraction=extraction)


def _read_attachment(
    part: email.message.Message, *, max_chars: int, depth: int, extract_nested: NestedExtractor
) -> AttachmentText:
    name = _filename(part)
    content_type = part.get_content_type()
    data = _payload_bytes(part)
    extraction = _special_attachment(content_type, part)
    if extraction is None:
        extraction = extract_nested(data, name, content_type, max_chars, depth + 1)
    return AttachmentText(
        name=name, content_type=content_type, size=len(data), extraction=extraction
    )


def _special_attachment(content_type: str, part: email.message.Message) -> Extraction | None:
    """Return the result for S/MIME and PGP parts, which carry no readable text of their own."""
    if content_type in ("application/pkcs7-signature", "application/x-pkcs7-signature"):
        return finish("", max_chars=1)
    if content_type == "application/pgp-signature":
        return finish("", max_chars=1)
    if content_type in _PKCS7_MIME_TYPES:
        # Signed content that could be read was walked as part of the message already.
        if cms_kind(_payload_bytes(part)) == "encrypted":
            return failure("encrypted", "the part is S/MIME encrypted")
        return failure("corrupt", "the S/MIME part holds no readable signed content")
    if content_type == "application/pgp-encrypted" or (
        content_type == "application/octet-stream"
        and ((part.get_filename() or "").lower().endswith((".pgp", ".gpg", ".asc")))
    ):
        return failure("encrypted", "the part is PGP encrypted")
    return None


def message_as_text(
    message_text: MessageText, headers: dict[str, str], *, max_chars: int
) -> Extraction:
    """Flatten a message (headers, body, attachment names and text) into one Extraction.

    Used for a message attached to another message and for .eml/.msg files. The result's
    status is the first incomplete part's, so a failed nested attachment is reported.
    """
    lines = [f"{key}: {value}" for key, value in headers.items() if value]
    sections = ["\n".join(lines), message_text.body]
    problems: list[tuple[str, Extraction]] = []
    if not message_text.body_extraction.complete:
        problems.append(("body", message_text.body_extraction))
    for attachment in message_text.attachments:
        label = attachment.name or attachment.content_type or "attachment"
        sections.append(f"[{label}]\n{attachment.extraction.text}".strip())
        if not attachment.extraction.complete:
            problems.append((f"attachment {label!r}", attachment.extraction))
    result = finish("\n\n".join(s for s in sections if s.strip()), max_chars=max_chars)
    result = Extraction(
        text=result.text,
        status=result.status,
        reason=result.reason,
        title=headers.get("Subject") or None,
        author=headers.get("From") or None,
    )
    if problems and result.status in ("ok", "empty"):
        where, first = problems[0]
        reason = f"{where}: {first.reason}"
        if len(problems) > 1:
            reason += f" (and {len(problems) - 1} more incomplete part(s))"
        return Extraction(
            text=result.text,
            status=first.status,
            reason=reason,
            title=result.title,
            author=result.author,
        )
    return result


def mime_headers(message: email.message.Message) -> dict[str, str]:
    """Return the decoded headers shown in a flattened message."""
    return {name: decode_header_value(message.get(name)) for name in _HEADERS_SHOWN}


def extract_mime_as_text(
    data: bytes, *, max_chars: int, depth: int, extract_nested: NestedExtractor
) -> Extraction:
    """Extract a MIME message (an .eml file or a message/rfc822 attachment) as one text."""
    message = parse_message(data)
    message_text = _message_text(
        message, max_chars=max_chars, depth=depth, extract_nested=extract_nested
    )
    return message_as_text(message_text, mime_headers(message), max_chars=max_chars)

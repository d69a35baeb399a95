"""Deduplication: which families a production leaves out as copies of one it produces.

Dedup works on whole families, so a message is never produced without its attachments
and an attachment is never suppressed on its own. The first family in production order
with a given hash is the master. Each later family with the same hash, in the same
custodian's data or anywhere depending on the scope, is suppressed and mapped to it.

The hash (DEDUPHASH in the load file) is:

- for a file: the SHA-256 of its native, i.e. of the archived bytes. Identical bytes are
  the same document wherever they are stored.
- for a message: the SHA-256 of a canonical JSON object (keys sorted, no whitespace,
  UTF-8) of normalised fields, format version 1::

      {"attachments": sorted SHA-256 of each attachment's decoded content,
       "bcc", "cc", "to": sorted, lowercased, de-duplicated addresses,
       "body": SHA-256 of the body parts (see ``body_sha256``),
       "from": lowercased sender address,
       "sent": sent time in UTC, ISO 8601 to the second, or null,
       "subject": subject with runs of white space collapsed and trimmed,
       "v": 1}

  The SHA-256 of the MIME cannot serve, because every mailbox's copy of one message
  carries its own transport headers (Received, X-Folder and the like), so the copies
  never hash alike. The Message-ID alone cannot serve either: the sending client sets
  it, some reuse or omit it, and a copy whose body or attachments were changed
  (a disclaimer added by a transport rule) keeps it. Bcc recipients are part of the hash
  because only the sender's copy lists them, so that copy is never suppressed as a
  duplicate of a recipient's copy that lacks them.
"""

from __future__ import annotations

import email.message
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

DedupScope = Literal["none", "custodian", "global"]
DEDUP_SCOPES: tuple[DedupScope, ...] = ("none", "custodian", "global")
MAIL_HASH_VERSION = 1

_WHITESPACE = re.compile(r"\s+")


def _addresses(values: Iterable[str | None]) -> list[str]:
    return sorted({value.strip().lower() for value in values if value and value.strip()})


def _sent(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class MailHashFields:
    """The message fields that the mail dedup hash covers."""

    from_address: str | None
    to: Sequence[str] = ()
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    subject: str | None = None
    sent_at: datetime | None = None
    body_sha256: str = ""
    attachment_sha256: Sequence[str] = ()


def mail_hash(fields: MailHashFields) -> str:
    """Return the mail dedup hash described in the module docstring."""
    document = {
        "v": MAIL_HASH_VERSION,
        "from": (fields.from_address or "").strip().lower(),
        "to": _addresses(fields.to),
        "cc": _addresses(fields.cc),
        "bcc": _addresses(fields.bcc),
        "subject": _WHITESPACE.sub(" ", fields.subject or "").strip(),
        "sent": _sent(fields.sent_at),
        "body": fields.body_sha256,
        "attachments": sorted(fields.attachment_sha256),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalise_body(data: bytes) -> bytes:
    """Return body bytes with line ends as LF, trailing blanks cut, outer blank lines dropped.

    Mail servers rewrite line ends and strip trailing white space in transit, so copies
    of one message differ in exactly these ways.
    """
    text = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = [line.rstrip(b" \t") for line in text.split(b"\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return b"\n".join(lines)


def _body_parts(part: email.message.Message) -> Iterator[email.message.Message]:
    """Yield text/plain and text/html parts that are not attachments, depth first.

    Attached messages are not entered: their content is covered by the attachment hashes.
    """
    if part.get_content_type() == "message/rfc822":
        return
    if part.is_multipart():
        payload = part.get_payload()
        for child in payload if isinstance(payload, list) else []:
            if isinstance(child, email.message.Message):
                yield from _body_parts(child)
        return
    disposition = (part.get_content_disposition() or "").lower()
    if part.get_content_type() in ("text/plain", "text/html") and disposition != "attachment":
        try:
            named = part.get_filename() is not None
        except (ValueError, LookupError, TypeError):
            named = True
        if not named:
            yield part


def body_sha256(message: email.message.Message) -> str:
    """Return the SHA-256 of the message's body parts, each decoded and normalised.

    The parts are the text/plain and text/html parts that are not attachments, in MIME
    order, transfer encoding removed, each normalised with ``normalise_body`` and
    followed by one zero byte.
    """
    digest = hashlib.sha256()
    for part in _body_parts(message):
        try:
            payload = part.get_payload(decode=True)
        except (ValueError, LookupError, TypeError):
            payload = None
        data = payload if isinstance(payload, bytes) else b""
        digest.update(normalise_body(data))
        digest.update(b"\x00")
    return digest.hexdigest()


@dataclass
class Deduplicator:
    """Decide master or duplicate for each family, in production order."""

    scope: DedupScope
    masters: dict[tuple[str, str], int] = field(default_factory=dict)
    """(custodian id or "", hash) → ordinal of the master family."""

    def check(self, ordinal: int, custodian_id: str, dedup_hash: str | None) -> int | None:
        """Return the master's ordinal when the family is a duplicate, else None.

        A family that is not a duplicate becomes the master for its hash. A family
        without a hash (no content archived) is never a duplicate.
        """
        if self.scope == "none" or dedup_hash is None:
            return None
        key = (custodian_id if self.scope == "custodian" else "", dedup_hash)
        master = self.masters.get(key)
        if master is None:
            self.masters[key] = ordinal
        return master

"""Records the tenant model keeps, the read-only views it hands out, and id derivation.

Mutable records (``_``-prefixed classes) live only inside ``Tenant`` and are touched under
its lock. Route handlers get frozen views, so a request never reads a half-applied change.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from m365lake.emulator.seed import SeedUser

# uuid5 namespace for every id the emulator derives, so the same seed gives the same ids.
ID_NAMESPACE = uuid.UUID("6f1c9a52-3b1e-4c55-9a55-6d3e2f0b7a11")

# Exchange ids are base64 strings with recognisable prefixes; keeping the prefixes makes
# immutable ids ("AAkALg…") and REST ids ("AAMkAG…") distinguishable, as they are in Graph.
IMMUTABLE_PREFIX = "AAkALg"
REST_PREFIX = "AAMkAG"
FOLDER_PREFIX = "AAMkAF"
ATTACHMENT_PREFIX = "AAMkAT"


def derive_uuid(*parts: str) -> str:
    """Return a GUID string that depends only on ``parts``."""
    return str(uuid.uuid5(ID_NAMESPACE, "|".join(parts)))


def derive_id(prefix: str, *parts: str, length: int = 32) -> str:
    """Return an opaque, URL-path-safe id: ``prefix`` + base64url of a hash of ``parts``."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return prefix + base64.urlsafe_b64encode(digest).decode().rstrip("=")[:length]


def change_key_for(immutable_id: str, seq: int) -> str:
    """Return the changeKey of a message or folder version (new for every change)."""
    return derive_id("CQAAABYAAA", immutable_id, str(seq), length=24)


class SeqCounter:
    """The tenant-wide change sequence; callers hold the tenant lock."""

    def __init__(self) -> None:
        self.value = 0

    def next(self) -> int:
        self.value += 1
        return self.value


RESTORE_ROLES = (
    "Mail.ReadWrite",
    "Files.ReadWrite.All",
    "Calendars.ReadWrite",
    "Contacts.ReadWrite",
)
"""The write permissions restore needs, which an app registration for backup lacks."""


@dataclass
class AppRegistration:
    """The one app registration the emulated tenant trusts.

    ``roles`` are the granted application permissions, copied into each access token when
    it is issued, so changing them affects only tokens issued afterwards.
    ``blocked_mailboxes`` (user ids) emulates an Exchange application access policy.
    """

    client_id: str
    client_secret: str
    roles: list[str] = field(
        default_factory=lambda: [
            "User.Read.All",
            "Mail.Read",
            "Files.Read.All",
            "Sites.Read.All",
            "Calendars.Read",
            "Contacts.Read",
            "Team.ReadBasic.All",
            "Channel.ReadBasic.All",
            "ChannelMessage.Read.All",
        ]
    )
    certificates: dict[str, bytes] = field(default_factory=dict)
    """Registered certificates as PEM, keyed by lowercase hex SHA-1 and SHA-256 thumbprints."""
    blocked_mailboxes: set[str] = field(default_factory=set)
    protected_apis_approved: bool = True
    """Whether Microsoft approved the app for Teams protected APIs (channel messages)."""

    def add_certificate(self, certificate_pem: bytes) -> str:
        """Register a public certificate for client assertions; return its SHA-1 thumbprint."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        certificate = x509.load_pem_x509_certificate(certificate_pem)
        sha1 = certificate.fingerprint(hashes.SHA1()).hex()  # x5t is SHA-1 by definition
        sha256 = certificate.fingerprint(hashes.SHA256()).hex()
        self.certificates[sha1] = certificate_pem
        self.certificates[sha256] = certificate_pem
        return sha1


@dataclass
class _Folder:
    id: str
    parent_id: str | None
    display_name: str
    well_known: str | None
    is_hidden: bool
    created_seq: int
    modified_seq: int
    total: int = 0
    unread: int = 0


@dataclass
class _Message:
    immutable_id: str
    rest_id: str
    folder_id: str
    mime: bytes
    is_read: bool
    categories: tuple[str, ...]
    received_at: datetime | None
    source: str | None
    created_at: datetime
    modified_at: datetime
    created_seq: int
    modified_seq: int
    entered_seq: int
    """Sequence number at which the message entered its current folder."""
    moves: int = 0
    is_draft: bool = False
    """Set at creation only: Exchange fixes PidTagMessageFlags' unsent bit on first save."""


@dataclass(frozen=True)
class Tombstone:
    """An item that left a folder (deleted or moved out) at ``seq``.

    ``entered_seq`` is when it had entered that folder: a delta round whose watermark is
    later than that never saw the item, so it gets no tombstone for it.
    """

    seq: int
    immutable_id: str
    rest_id: str
    entered_seq: int


@dataclass(frozen=True)
class LogEntry:
    """One event in a folder's change log, in sequence order.

    ``removed`` is None for "created or updated here at ``seq``"; such an entry is stale
    once the item changed again or left the folder, and readers skip it.
    """

    seq: int
    item_id: str
    removed: Tombstone | None = None


@dataclass
class _Mailbox:
    user_id: str
    root_id: str
    folders: dict[str, _Folder] = field(default_factory=dict)
    children: dict[tuple[str, str], str] = field(default_factory=dict)
    """(parent id, case-folded display name) to folder id, for path lookups."""
    messages: dict[str, _Message] = field(default_factory=dict)
    rest_index: dict[str, str] = field(default_factory=dict)
    message_log: dict[str, list[LogEntry]] = field(default_factory=dict)
    """Per folder id: message changes in sequence order, the source of message delta."""
    folder_log: list[LogEntry] = field(default_factory=list)
    generation: int = 1
    folder_counter: int = 0
    message_counter: int = 0


@dataclass(frozen=True)
class UserInfo:
    """A directory user as the Graph routes see it."""

    id: str
    user: SeedUser
    has_mailbox: bool


@dataclass(frozen=True)
class FolderInfo:
    """A snapshot of one mail folder with its counts."""

    id: str
    parent_id: str | None
    display_name: str
    well_known: str | None
    is_hidden: bool
    child_folder_count: int
    total_item_count: int
    unread_item_count: int
    modified_seq: int
    change_key: str


@dataclass(frozen=True)
class MessageInfo:
    """A snapshot of one message; ``mime`` is the exact stored bytes."""

    immutable_id: str
    rest_id: str
    folder_id: str
    mime: bytes
    is_read: bool
    categories: tuple[str, ...]
    received_at: datetime | None
    created_at: datetime
    modified_at: datetime
    modified_seq: int
    change_key: str
    is_draft: bool = False


class LiveMessage(NamedTuple):
    """A live message as tests and the demo compare it with the archive."""

    folder_id: str
    folder_path: tuple[str, ...]
    mime: bytes
    is_read: bool
    categories: tuple[str, ...]
    change_key: str

"""Seed records: what corpus loaders and the generator hand to the tenant model."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class SeedUser:
    """A directory user who owns a mailbox."""

    user_principal_name: str
    display_name: str
    mail: str | None = None
    account_enabled: bool = True
    has_mailbox: bool = True


@dataclass(frozen=True)
class SeedMessage:
    """One message as it sits in a mailbox before the emulator assigns ids.

    ``folder_path`` is a tuple of display names below the mailbox root, for example
    ``("Inbox", "hist_vols")``. ``mime`` is served byte-exact by ``$value``.
    """

    user_principal_name: str
    folder_path: tuple[str, ...]
    mime: bytes
    received_at: datetime | None = None
    """None: taken from the MIME ``Date`` header, or a fixed date when that is unusable."""
    is_read: bool = True
    categories: tuple[str, ...] = ()
    source: str | None = None
    """Corpus-relative path of the message's file, for test assertions only."""


@dataclass(frozen=True)
class SeedSite:
    """A SharePoint site with its document libraries (drives)."""

    name: str
    """URL name, for example ``legal`` in ``https://contoso.sharepoint.com/sites/legal``."""
    display_name: str
    libraries: tuple[str, ...] = ("Documents",)


@dataclass(frozen=True)
class SeedFile:
    """A file in a user's OneDrive or a site's library, before the emulator assigns ids.

    ``owner`` is a user principal name when ``drive_kind`` is ``onedrive``, else a site
    name; ``library`` names the site's library (always ``Documents`` for OneDrive).
    ``path`` contains the folder names and the file name below the drive root.
    """

    drive_kind: str
    """``onedrive`` or ``site``."""
    owner: str
    library: str
    path: tuple[str, ...]
    content: bytes
    modified_at: datetime | None = None
    source: str | None = None
    shared_scope: str | None = None
    """Sharing link scope (``anonymous``, ``organization``, ``users``); None: not shared."""


@dataclass(frozen=True)
class SeedContact:
    """A contact in a mailbox; ``folder_path`` names folders below the default Contacts
    folder (empty: the default folder itself), ``properties`` are Graph contact properties."""

    user_principal_name: str
    folder_path: tuple[str, ...]
    properties: dict[str, Any]


@dataclass(frozen=True)
class SeedEvent:
    """A calendar event or series before the emulator assigns ids.

    ``payload`` is the Graph JSON a client would POST (subject, start, end, recurrence,
    attendees ...). ``moved`` holds (original, new) local starts of occurrences that become
    exceptions; ``cancelled`` holds original local starts of cancelled occurrences.
    """

    user_principal_name: str
    payload: dict[str, Any]
    calendar: str = "Calendar"
    moved: tuple[tuple[datetime, datetime], ...] = ()
    cancelled: tuple[datetime, ...] = ()
    attachments: tuple[tuple[str, str, bytes], ...] = ()
    """File attachments as (name, content type, content)."""


@dataclass
class SeedTenant:
    """Everything needed to build an emulated tenant."""

    domain: str = "contoso.example"
    users: list[SeedUser] = field(default_factory=list)
    messages: list[SeedMessage] = field(default_factory=list)
    folders: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    """Extra (user principal name, folder path) pairs to create even when empty."""
    sites: list[SeedSite] = field(default_factory=list)
    files: list[SeedFile] = field(default_factory=list)
    events: list[SeedEvent] = field(default_factory=list)
    contact_folders: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    """Extra (user principal name, path below the default Contacts folder) pairs."""
    contacts: list[SeedContact] = field(default_factory=list)

"""Seed records: what corpus loaders and the generator hand to the tenant model."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


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
    """Where the message came from (corpus-relative path), for test assertions only."""


@dataclass
class SeedTenant:
    """Everything needed to build an emulated tenant."""

    domain: str = "contoso.example"
    users: list[SeedUser] = field(default_factory=list)
    messages: list[SeedMessage] = field(default_factory=list)
    folders: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    """Extra (user principal name, folder path) pairs to create even when empty."""

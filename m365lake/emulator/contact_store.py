"""Contacts half of ``Tenant``: contact folders and contacts of every mailbox, with change logs.

Each mailbox has one default folder, ``Contacts``, below the mailbox root. Every other
contact folder descends from it: ``POST /users/{id}/contactFolders`` creates a child of
the default folder, and ``GET /users/{id}/contactFolders`` lists those children, as Graph
v1.0 does. The default folder itself is reached by its id or the well-known name
``contacts``; the contacts in it are ``/users/{id}/contacts``.

Exchange compares folder names among siblings without case, so ``Contacts`` can never
have a sibling ``contacts``. It can have a child of that name, which this model allows:
the default folder ``Contacts`` and its child ``contacts`` are two folders.

Changes take the tenant's sequence numbers like mail, and contact delta tokens die with
the mailbox's sync-state generation (``Tenant.expire_sync_state``).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from m365lake.emulator import mailboxes, records
from m365lake.emulator.mail_writes import FolderExistsError
from m365lake.emulator.records import LogEntry, SeqCounter, Tombstone, _Mailbox

DEFAULT_FOLDER_NAME = "Contacts"
WELL_KNOWN_NAME = "contacts"


@dataclass
class _ContactFolder:
    id: str
    parent_id: str
    display_name: str
    is_default: bool
    created_seq: int
    modified_seq: int


@dataclass
class _Contact:
    id: str
    folder_id: str
    properties: dict[str, Any]
    created_at: datetime
    modified_at: datetime
    created_seq: int
    modified_seq: int
    entered_seq: int
    """Sequence number at which the contact entered its current folder."""


@dataclass
class _ContactBook:
    """The contact folders and contacts of one mailbox."""

    user_id: str
    default_id: str
    folders: dict[str, _ContactFolder] = field(default_factory=dict)
    contacts: dict[str, _Contact] = field(default_factory=dict)
    folder_log: list[LogEntry] = field(default_factory=list)
    contact_log: dict[str, list[LogEntry]] = field(default_factory=dict)
    """Per folder id: contact changes in sequence order, the source of contact delta."""
    folder_counter: int = 0
    contact_counter: int = 0


@dataclass(frozen=True)
class ContactFolderInfo:
    """A snapshot of one contact folder."""

    id: str
    parent_id: str
    display_name: str
    is_default: bool
    modified_seq: int


@dataclass(frozen=True)
class ContactInfo:
    """A snapshot of one contact; ``properties`` is a private copy of its Graph properties."""

    id: str
    folder_id: str
    properties: dict[str, Any]
    created_at: datetime
    modified_at: datetime
    modified_seq: int
    change_key: str


@dataclass(frozen=True)
class LiveContact:
    """A live contact as tests compare it with the archive."""

    folder_id: str
    folder_path: tuple[str, ...]
    properties: dict[str, Any]
    change_key: str


ContactEvent = ContactInfo | Tombstone


def _folder_info(folder: _ContactFolder) -> ContactFolderInfo:
    return ContactFolderInfo(
        folder.id, folder.parent_id, folder.display_name, folder.is_default, folder.modified_seq
    )


def _contact_info(contact: _Contact) -> ContactInfo:
    return ContactInfo(
        id=contact.id,
        folder_id=contact.folder_id,
        properties=copy.deepcopy(contact.properties),
        created_at=contact.created_at,
        modified_at=contact.modified_at,
        modified_seq=contact.modified_seq,
        change_key=records.change_key_for(contact.id, contact.modified_seq),
    )


class ContactStoreMixin:
    """Contacts half of ``Tenant``; route methods take user ids, test helpers take UPNs."""

    _lock: threading.RLock
    _counter: SeqCounter
    _mailboxes: dict[str, _Mailbox]
    _upn_index: dict[str, str]

    def _init_contacts(self) -> None:
        self._contact_books: dict[str, _ContactBook] = {}

    # ---- reads for the Graph routes -----------------------------------------------------

    def default_contact_folder(self, user_id: str) -> ContactFolderInfo:
        with self._lock:
            book = self._contacts_of(user_id)
            return _folder_info(book.folders[book.default_id])

    def contact_folders(self, user_id: str) -> list[ContactFolderInfo]:
        """Return every contact folder of the mailbox, the default folder first."""
        with self._lock:
            return [_folder_info(folder) for folder in self._contacts_of(user_id).folders.values()]

    def resolve_contact_folder(self, user_id: str, key: str) -> ContactFolderInfo | None:
        """Find a contact folder by id, or the default folder by its well-known name."""
        with self._lock:
            book = self._contacts_of(user_id)
            if key.lower() == WELL_KNOWN_NAME:
                key = book.default_id
            folder = book.folders.get(key)
            return None if folder is None else _folder_info(folder)

    def contacts_in(self, user_id: str, folder_id: str) -> list[ContactInfo]:
        """Return the contacts of one folder, oldest first."""
        with self._lock:
            book = self._contacts_of(user_id)
            found = [c for c in book.contacts.values() if c.folder_id == folder_id]
            return [_contact_info(c) for c in sorted(found, key=lambda c: c.created_seq)]

    def find_contact(self, user_id: str, contact_id: str) -> ContactInfo | None:
        with self._lock:
            contact = self._contacts_of(user_id).contacts.get(contact_id)
            return None if contact is None else _contact_info(contact)

    def contact_folder_changes(
        self, user_id: str, *, after: int, upto: int, cursor: int, limit: int
    ) -> tuple[list[ContactFolderInfo | Tombstone], int | None]:
        """Return folder events in (after, upto] past ``cursor``; the default folder is left out.

        ``after == 0`` is an initial round: current folders only, no tombstones.
        """
        with self._lock:
            book = self._contacts_of(user_id)

            def current(entry: LogEntry) -> ContactFolderInfo | Tombstone | None:
                if entry.removed is not None:
                    keep = after > 0 and entry.removed.entered_seq <= after
                    return entry.removed if keep else None
                folder = book.folders.get(entry.item_id)
                if folder is None or folder.is_default or folder.modified_seq != entry.seq:
                    return None
                return _folder_info(folder)

            return mailboxes.page_events(book.folder_log, current, max(after, cursor), upto, limit)

    def contact_changes(
        self, user_id: str, folder_id: str, *, after: int, upto: int, cursor: int, limit: int
    ) -> tuple[list[ContactEvent], int | None]:
        """Like ``contact_folder_changes`` for the contacts of one folder."""
        with self._lock:
            book = self._contacts_of(user_id)
            log = book.contact_log.get(folder_id, [])

            def current(entry: LogEntry) -> ContactEvent | None:
                if entry.removed is not None:
                    keep = after > 0 and entry.removed.entered_seq <= after
                    return entry.removed if keep else None
                contact = book.contacts.get(entry.item_id)
                if contact is None or contact.folder_id != folder_id:
                    return None
                if contact.modified_seq != entry.seq:
                    return None
                return _contact_info(contact)

            return mailboxes.page_events(log, current, max(after, cursor), upto, limit)

    def contact_folder_path(self, user_id: str, folder_id: str) -> tuple[str, ...]:
        with self._lock:
            return self._contact_path(self._contacts_of(user_id), folder_id)

    # ---- writes (Graph POST routes and test mutations) -----------------------------------

    def create_contact_folder(
        self, user_id: str, parent_id: str | None, name: str
    ) -> ContactFolderInfo:
        """Create a folder below ``parent_id`` (None: the default folder).

        Raises FolderExistsError when a sibling has the same name in any case, and
        KeyError when the parent is not a contact folder of the mailbox.
        """
        with self._lock:
            book = self._contacts_of(user_id)
            parent = parent_id or book.default_id
            if parent not in book.folders:
                raise KeyError(f"no contact folder {parent!r} in mailbox {user_id}")
            if self._contact_child(book, parent, name) is not None:
                raise FolderExistsError(name)
            return _folder_info(self._new_contact_folder(book, parent, name))

    def create_contact(
        self, user_id: str, folder_id: str, properties: Mapping[str, Any]
    ) -> ContactInfo:
        """Store a new contact in ``folder_id``; ``properties`` are Graph contact properties."""
        with self._lock:
            book = self._contacts_of(user_id)
            if folder_id not in book.folders:
                raise KeyError(f"no contact folder {folder_id!r} in mailbox {user_id}")
            book.contact_counter += 1
            contact_id = records.derive_id(
                records.REST_PREFIX, user_id, "contact", str(book.contact_counter)
            )
            seq = self._counter.next()
            now = datetime.now(UTC)
            contact = _Contact(
                contact_id, folder_id, copy.deepcopy(dict(properties)), now, now, seq, seq, seq
            )
            book.contacts[contact_id] = contact
            book.contact_log.setdefault(folder_id, []).append(LogEntry(seq, contact_id))
            return _contact_info(contact)

    def remove_contact(self, user_id: str, contact_id: str) -> None:
        """Delete a contact by id (Graph DELETE); raises KeyError when it is not there."""
        with self._lock:
            book = self._contacts_of(user_id)
            self._remove_contact(book, self._contact_record(book, contact_id))

    def add_contact_folder(self, upn: str, path: tuple[str, ...]) -> str:
        """Return the id of the folder at ``path`` below the default folder, creating it.

        An empty ``path`` names the default folder itself.
        """
        with self._lock:
            book = self._contacts_of(self._contact_user(upn))
            folder_id = book.default_id
            for name in path:
                child = self._contact_child(book, folder_id, name)
                if child is None:
                    child = self._new_contact_folder(book, folder_id, name)
                folder_id = child.id
            return folder_id

    def add_contact(
        self, upn: str, folder_path_or_id: tuple[str, ...] | str, properties: Mapping[str, Any]
    ) -> str:
        """Store a contact in a folder given by id or by path below the default folder."""
        with self._lock:
            user_id = self._contact_user(upn)
            if isinstance(folder_path_or_id, str):
                folder_id = folder_path_or_id
            else:
                folder_id = self.add_contact_folder(upn, folder_path_or_id)
            return self.create_contact(user_id, folder_id, properties).id

    def update_contact(self, upn: str, contact_id: str, changes: Mapping[str, Any]) -> None:
        """Change properties of a contact (None removes one); its next delta reports it."""
        with self._lock:
            book = self._contacts_of(self._contact_user(upn))
            contact = self._contact_record(book, contact_id)
            for name, value in changes.items():
                if value is None:
                    contact.properties.pop(name, None)
                else:
                    contact.properties[name] = copy.deepcopy(value)
            contact.modified_seq = self._counter.next()
            contact.modified_at = datetime.now(UTC)
            book.contact_log.setdefault(contact.folder_id, []).append(
                LogEntry(contact.modified_seq, contact.id)
            )

    def move_contact(
        self, upn: str, contact_id: str, folder_path_or_id: tuple[str, ...] | str
    ) -> None:
        """Move a contact to another folder, keeping its id as ``IdType="ImmutableId"`` does.

        The old folder's delta reports a tombstone and the new folder's an upsert.
        """
        with self._lock:
            user_id = self._contact_user(upn)
            book = self._contacts_of(user_id)
            contact = self._contact_record(book, contact_id)
            if isinstance(folder_path_or_id, str):
                target = folder_path_or_id
            else:
                target = self.add_contact_folder(upn, folder_path_or_id)
            if target not in book.folders:
                raise KeyError(f"no contact folder {target!r} in {upn!r}")
            if target == contact.folder_id:
                return
            seq = self._counter.next()
            tombstone = Tombstone(seq, contact.id, contact.id, contact.entered_seq)
            book.contact_log.setdefault(contact.folder_id, []).append(
                LogEntry(seq, contact.id, tombstone)
            )
            contact.folder_id = target
            contact.modified_seq = contact.entered_seq = self._counter.next()
            contact.modified_at = datetime.now(UTC)
            book.contact_log.setdefault(target, []).append(
                LogEntry(contact.modified_seq, contact.id)
            )

    def delete_contact(self, upn: str, contact_id: str) -> None:
        """Hard-delete a contact; its folder's next delta carries a tombstone."""
        with self._lock:
            book = self._contacts_of(self._contact_user(upn))
            self._remove_contact(book, self._contact_record(book, contact_id))

    def delete_contact_folder(self, upn: str, folder_id: str) -> None:
        """Delete a folder with its subfolders and their contacts; the default folder stays."""
        with self._lock:
            book = self._contacts_of(self._contact_user(upn))
            folder = book.folders.get(folder_id)
            if folder is None or folder.is_default:
                raise KeyError(f"no deletable contact folder {folder_id!r} in {upn!r}")
            doomed = [folder_id, *self._contact_descendants(book, folder_id)]
            for doomed_id in doomed:
                for contact in [c for c in book.contacts.values() if c.folder_id == doomed_id]:
                    self._remove_contact(book, contact)
            for doomed_id in reversed(doomed):
                gone = book.folders.pop(doomed_id)
                seq = self._counter.next()
                book.folder_log.append(
                    LogEntry(seq, doomed_id, Tombstone(seq, doomed_id, doomed_id, gone.created_seq))
                )
                book.contact_log.pop(doomed_id, None)

    def live_contacts(self, upn: str) -> dict[str, LiveContact]:
        """Return every contact of the mailbox by id, with its folder path."""
        with self._lock:
            book = self._contacts_of(self._contact_user(upn))
            return {
                contact.id: LiveContact(
                    contact.folder_id,
                    self._contact_path(book, contact.folder_id),
                    copy.deepcopy(contact.properties),
                    records.change_key_for(contact.id, contact.modified_seq),
                )
                for contact in book.contacts.values()
            }

    # ---- internals ----------------------------------------------------------------------

    def _contact_user(self, upn: str) -> str:
        user_id = self._upn_index.get(upn.lower())
        if user_id is None or user_id not in self._mailboxes:
            raise KeyError(f"no mailbox for user principal name {upn!r}")
        return user_id

    def _contacts_of(self, user_id: str) -> _ContactBook:
        """Return the mailbox's contacts, creating the default folder on first use."""
        book = self._contact_books.get(user_id)
        if book is not None:
            return book
        mailbox = self._mailboxes[user_id]
        default_id = records.derive_id(records.FOLDER_PREFIX, user_id, "contacts-default")
        book = _ContactBook(user_id=user_id, default_id=default_id)
        seq = self._counter.next()
        book.folders[default_id] = _ContactFolder(
            default_id, mailbox.root_id, DEFAULT_FOLDER_NAME, True, seq, seq
        )
        book.folder_log.append(LogEntry(seq, default_id))
        self._contact_books[user_id] = book
        return book

    def _new_contact_folder(self, book: _ContactBook, parent_id: str, name: str) -> _ContactFolder:
        book.folder_counter += 1
        folder_id = records.derive_id(
            records.FOLDER_PREFIX, book.user_id, "contactfolder", str(book.folder_counter)
        )
        seq = self._counter.next()
        folder = _ContactFolder(folder_id, parent_id, name, False, seq, seq)
        book.folders[folder_id] = folder
        book.folder_log.append(LogEntry(seq, folder_id))
        return folder

    @staticmethod
    def _contact_child(book: _ContactBook, parent_id: str, name: str) -> _ContactFolder | None:
        # Exchange folder names are unique among siblings regardless of case.
        wanted = name.casefold()
        for folder in book.folders.values():
            if folder.parent_id == parent_id and folder.display_name.casefold() == wanted:
                return folder
        return None

    @staticmethod
    def _contact_descendants(book: _ContactBook, folder_id: str) -> list[str]:
        found: list[str] = []
        for folder in list(book.folders.values()):
            if folder.parent_id == folder_id:
                found.append(folder.id)
                found.extend(ContactStoreMixin._contact_descendants(book, folder.id))
        return found

    @staticmethod
    def _contact_path(book: _ContactBook, folder_id: str) -> tuple[str, ...]:
        names: list[str] = []
        folder = book.folders.get(folder_id)
        while folder is not None:
            names.append(folder.display_name)
            folder = book.folders.get(folder.parent_id)
        return tuple(reversed(names))

    @staticmethod
    def _contact_record(book: _ContactBook, contact_id: str) -> _Contact:
        contact = book.contacts.get(contact_id)
        if contact is None:
            raise KeyError(f"no contact {contact_id!r} in mailbox {book.user_id}")
        return contact

    def _remove_contact(self, book: _ContactBook, contact: _Contact) -> None:
        seq = self._counter.next()
        tombstone = Tombstone(seq, contact.id, contact.id, contact.entered_seq)
        book.contact_log.setdefault(contact.folder_id, []).append(
            LogEntry(seq, contact.id, tombstone)
        )
        del book.contacts[contact.id]

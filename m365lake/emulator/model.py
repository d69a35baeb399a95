"""The emulated tenant: users, mailboxes, folders and messages, with a change log for delta.

One ``threading.RLock`` guards everything, because the HTTPS server thread reads while tests
mutate from the main thread. Every change takes the next value of one tenant-wide sequence
counter; delta tokens are watermarks on that counter.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from m365lake.emulator import mailboxes, records
from m365lake.emulator.calendar_store import CalendarMixin
from m365lake.emulator.contact_store import ContactStoreMixin
from m365lake.emulator.drive_writes import DriveWriteMixin
from m365lake.emulator.mail_writes import MailWriteMixin
from m365lake.emulator.records import (
    AppRegistration,
    FolderInfo,
    LiveMessage,
    LogEntry,
    MessageInfo,
    Tombstone,
    UserInfo,
    _Mailbox,
    _Message,
)
from m365lake.emulator.seed import SeedTenant, SeedUser
from m365lake.emulator.teams import TeamsTenantMixin

logger = logging.getLogger(__name__)

# (well-known name, display name, hidden): the folders every new mailbox starts with.
STANDARD_FOLDERS: tuple[tuple[str | None, str, bool], ...] = (
    ("inbox", "Inbox", False),
    ("drafts", "Drafts", False),
    ("sentitems", "Sent Items", False),
    ("deleteditems", "Deleted Items", False),
    ("junkemail", "Junk Email", False),
    ("outbox", "Outbox", False),
    ("archive", "Archive", False),
    ("conversationhistory", "Conversation History", False),
    (None, "Conversation Action Settings", True),
)

DeltaEvent = MessageInfo | Tombstone

# Parsed message properties kept per tenant; bounded because bodies of a large corpus would
# otherwise stay in memory twice.
PROPERTIES_CACHE_SIZE = 4096


class Tenant(MailWriteMixin, DriveWriteMixin, CalendarMixin, ContactStoreMixin, TeamsTenantMixin):
    """A tenant with one app registration; all methods are thread-safe."""

    def __init__(self, *, domain: str = "contoso.example", tenant_id: str | None = None) -> None:
        self._lock = threading.RLock()
        self.domain = domain
        self.tenant_id = tenant_id or records.derive_uuid("tenant", domain)
        self.app = AppRegistration(
            client_id=records.derive_uuid("app", self.tenant_id),
            client_secret=secrets.token_urlsafe(30),
        )
        self._counter = records.SeqCounter()
        self._users: dict[str, SeedUser] = {}
        self._upn_index: dict[str, str] = {}
        self._mailboxes: dict[str, _Mailbox] = {}
        self._sources: dict[str, str] = {}
        self._properties_cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._init_drives()
        self._init_teams()
        self._init_calendars()
        self._init_contacts()

    @classmethod
    def from_seed(cls, seed: SeedTenant, *, tenant_id: str | None = None) -> Tenant:
        """Build a tenant holding the seed's users, folders and messages (ids derived from it)."""
        tenant = cls(domain=seed.domain, tenant_id=tenant_id)
        for user in seed.users:
            tenant.add_user(user)
        for upn, path in seed.folders:
            tenant.add_folder(upn, path)
        for message in seed.messages:
            message_id = tenant.add_message(
                message.user_principal_name,
                message.folder_path,
                message.mime,
                is_read=message.is_read,
                received_at=message.received_at,
                categories=message.categories,
            )
            if message.source is not None:
                tenant._sources[message_id] = message.source
        tenant._seed_drives(seed.sites, seed.files)
        for event in seed.events:
            tenant.add_calendar_event(
                event.user_principal_name,
                event.payload,
                calendar=event.calendar,
                moved=event.moved,
                cancelled=event.cancelled,
                attachments=event.attachments,
            )
        for upn, path in seed.contact_folders:
            tenant.add_contact_folder(upn, path)
        for contact in seed.contacts:
            tenant.add_contact(contact.user_principal_name, contact.folder_path, contact.properties)
        logger.info(
            "tenant %s seeded: %d users, %d messages",
            tenant.tenant_id,
            len(tenant._users),
            len(seed.messages),
        )
        return tenant

    # ---- users -------------------------------------------------------------------------

    def add_user(self, user: SeedUser) -> str:
        """Add a directory user (with a mailbox and a OneDrive unless ``has_mailbox`` is false)."""
        with self._lock:
            user_id = records.derive_uuid("user", user.user_principal_name.lower())
            if user_id in self._users:
                raise ValueError(f"user {user.user_principal_name!r} already exists")
            self._users[user_id] = user
            self._upn_index[user.user_principal_name.lower()] = user_id
            if user.has_mailbox:
                self._mailboxes[user_id] = mailboxes.create_mailbox(
                    user_id, self._counter, STANDARD_FOLDERS
                )
                # Every licensed (mailbox-enabled) user also has a OneDrive.
                self._create_onedrive(user_id, user.user_principal_name)
                self._create_calendar_box(user_id)
            return user_id

    def disable_user(self, upn: str) -> None:
        """Block the user's sign-in (``accountEnabled`` false); mailbox and OneDrive stay."""
        with self._lock:
            user_id = self.user_id(upn)
            self._users[user_id] = dataclasses.replace(self._users[user_id], account_enabled=False)

    def delete_user(self, upn: str) -> None:
        """Delete the user from the directory, so Graph returns 404 for it and its mailbox.

        Its OneDrive stays in the drive store, reachable by drive id only.
        """
        with self._lock:
            user_id = self.user_id(upn)
            del self._users[user_id]
            del self._upn_index[upn.lower()]
            self._mailboxes.pop(user_id, None)
            self._calendar_boxes.pop(user_id, None)

    def user_ids(self) -> list[str]:
        with self._lock:
            return list(self._users)

    def user_id(self, upn: str) -> str:
        with self._lock:
            try:
                return self._upn_index[upn.lower()]
            except KeyError:
                raise KeyError(f"no user with user principal name {upn!r}") from None

    def users(self) -> list[UserInfo]:
        with self._lock:
            return [
                UserInfo(id=uid, user=user, has_mailbox=uid in self._mailboxes)
                for uid, user in self._users.items()
            ]

    def resolve_user(self, key: str) -> UserInfo | None:
        """Find a user by object id or user principal name (case-insensitive)."""
        with self._lock:
            user_id = (
                key.lower() if key.lower() in self._users else self._upn_index.get(key.lower())
            )
            if user_id is None:
                return None
            return UserInfo(user_id, self._users[user_id], user_id in self._mailboxes)

    # ---- folders -----------------------------------------------------------------------

    def folder_id(self, upn: str, path: tuple[str, ...]) -> str:
        """Return the id of the folder at ``path`` below the mailbox root; creates nothing."""
        with self._lock:
            mailbox = self._mailbox(upn)
            folder = mailboxes.find_path(mailbox, path)
            if folder is None:
                raise KeyError(f"no folder {'/'.join(path)!r} in the mailbox of {upn!r}")
            return folder.id

    def add_folder(self, upn: str, path: tuple[str, ...]) -> str:
        """Return the id of the folder at ``path``, creating it and missing parents."""
        if not path:
            raise ValueError("a folder path needs at least one name")
        with self._lock:
            mailbox = self._mailbox(upn)
            parent = mailbox.folders[mailbox.root_id]
            for name in path:
                child = mailboxes.child_named(mailbox, parent.id, name)
                if child is None:
                    child = mailboxes.new_folder(
                        mailbox, self._counter, parent.id, name, None, hidden=False
                    )
                parent = child
            return parent.id

    def delete_folder(self, upn: str, folder_id: str) -> None:
        """Hard-delete a folder with its subfolders and their messages."""
        with self._lock:
            mailbox = self._mailbox(upn)
            folder = mailbox.folders.get(folder_id)
            if folder is None or folder.id == mailbox.root_id:
                raise KeyError(f"no deletable folder {folder_id!r} in the mailbox of {upn!r}")
            doomed = [folder_id]
            doomed.extend(mailboxes.descendants(mailbox, folder_id))
            for fid in doomed:
                for message in [m for m in mailbox.messages.values() if m.folder_id == fid]:
                    mailboxes.remove_message(mailbox, self._counter, message)
            for fid in reversed(doomed):
                gone = mailbox.folders.pop(fid)
                if gone.parent_id is not None:
                    mailbox.children.pop((gone.parent_id, gone.display_name.casefold()), None)
                seq = self._counter.next()
                mailbox.folder_log.append(
                    LogEntry(seq, fid, Tombstone(seq, fid, fid, gone.created_seq))
                )
                mailbox.message_log.pop(fid, None)
            assert folder.parent_id is not None
            mailboxes.touch_folder(mailbox, self._counter, folder.parent_id)

    def folders(self, user_id: str) -> list[FolderInfo]:
        """Return every folder of the mailbox, the root (msgfolderroot) first."""
        with self._lock:
            mailbox = self._mailboxes[user_id]
            return [mailboxes.folder_info(mailbox, f) for f in mailbox.folders.values()]

    def resolve_folder(self, user_id: str, key: str) -> FolderInfo | None:
        """Find a folder by id or well-known name (case-insensitive)."""
        with self._lock:
            mailbox = self._mailboxes[user_id]
            folder = mailbox.folders.get(key)
            if folder is None:
                wanted = key.lower()
                folder = next((f for f in mailbox.folders.values() if f.well_known == wanted), None)
            return None if folder is None else mailboxes.folder_info(mailbox, folder)

    def folder_path(self, user_id: str, folder_id: str) -> tuple[str, ...]:
        with self._lock:
            return mailboxes.path_of(self._mailboxes[user_id], folder_id)

    # ---- messages ----------------------------------------------------------------------

    def add_message(
        self,
        upn: str,
        folder_path_or_id: tuple[str, ...] | str,
        mime: bytes,
        *,
        is_read: bool = False,
        received_at: datetime | None = None,
        categories: Iterable[str] = (),
    ) -> str:
        """Store a message (creating missing folders of a path); return its immutable id."""
        with self._lock:
            mailbox = self._mailbox(upn, create_user=True)
            folder_id = self._target_folder(upn, mailbox, folder_path_or_id)
            mailbox.message_counter += 1
            immutable_id = records.derive_id(
                records.IMMUTABLE_PREFIX, mailbox.user_id, "message", str(mailbox.message_counter)
            )
            seq = self._counter.next()
            now = datetime.now(UTC)
            message = _Message(
                immutable_id=immutable_id,
                rest_id=records.derive_id(records.REST_PREFIX, immutable_id, "0"),
                folder_id=folder_id,
                mime=bytes(mime),
                is_read=is_read,
                categories=tuple(categories),
                received_at=received_at,
                source=None,
                created_at=received_at or now,
                modified_at=received_at or now,
                created_seq=seq,
                modified_seq=seq,
                entered_seq=seq,
            )
            mailbox.messages[immutable_id] = message
            mailbox.rest_index[message.rest_id] = immutable_id
            mailboxes.log_upsert(mailbox, message)
            mailboxes.count(mailbox, self._counter, message, +1)
            return immutable_id

    def update_message(
        self,
        upn: str,
        message_id: str,
        *,
        is_read: bool | None = None,
        categories: Iterable[str] | None = None,
    ) -> None:
        """Change flags of a message; it shows up as updated in its folder's next delta."""
        with self._lock:
            mailbox = self._mailbox(upn)
            message = mailboxes.find_message(mailbox, message_id)
            if is_read is not None and is_read != message.is_read:
                mailboxes.count(mailbox, self._counter, message, -1)
                message.is_read = is_read
                mailboxes.count(mailbox, self._counter, message, +1)
            if categories is not None:
                message.categories = tuple(categories)
            message.modified_seq = self._counter.next()
            message.modified_at = datetime.now(UTC)
            mailboxes.log_upsert(mailbox, message)

    def move_message(
        self, upn: str, message_id: str, folder_path_or_id: tuple[str, ...] | str
    ) -> None:
        """Move a message: the old folder gets a tombstone, the REST id changes."""
        with self._lock:
            mailbox = self._mailbox(upn)
            message = mailboxes.find_message(mailbox, message_id)
            target = self._target_folder(upn, mailbox, folder_path_or_id)
            if target == message.folder_id:
                return
            mailboxes.remove_from_folder(mailbox, self._counter, message)
            del mailbox.rest_index[message.rest_id]
            message.moves += 1
            message.rest_id = records.derive_id(
                records.REST_PREFIX, message.immutable_id, str(message.moves)
            )
            mailbox.rest_index[message.rest_id] = message.immutable_id
            message.folder_id = target
            message.modified_seq = message.entered_seq = self._counter.next()
            message.modified_at = datetime.now(UTC)
            mailboxes.count(mailbox, self._counter, message, +1)
            mailboxes.log_upsert(mailbox, message)

    def delete_message(self, upn: str, message_id: str) -> None:
        """Hard-delete a message; its folder's next delta carries a tombstone."""
        with self._lock:
            mailbox = self._mailbox(upn)
            mailboxes.remove_message(
                mailbox, self._counter, mailboxes.find_message(mailbox, message_id)
            )

    def find_message(self, user_id: str, key: str) -> MessageInfo | None:
        """Find a message by immutable id or current REST id; an old REST id finds nothing."""
        with self._lock:
            mailbox = self._mailboxes[user_id]
            immutable_id = key if key in mailbox.messages else mailbox.rest_index.get(key)
            if immutable_id is None:
                return None
            return mailboxes.message_info(mailbox.messages[immutable_id])

    def messages_in(self, user_id: str, folder_id: str | None) -> list[MessageInfo]:
        """Return the messages of one folder (or the whole mailbox), newest received first."""
        with self._lock:
            mailbox = self._mailboxes[user_id]
            found = [
                mailboxes.message_info(m)
                for m in mailbox.messages.values()
                if folder_id is None or m.folder_id == folder_id
            ]
        found.sort(key=lambda m: (m.received_at or m.created_at, m.immutable_id), reverse=True)
        return found

    def live_messages(self, upn: str) -> dict[str, LiveMessage]:
        with self._lock:
            mailbox = self._mailbox(upn)
            return {
                m.immutable_id: LiveMessage(
                    m.folder_id,
                    mailboxes.path_of(mailbox, m.folder_id),
                    m.mime,
                    m.is_read,
                    m.categories,
                    records.change_key_for(m.immutable_id, m.modified_seq),
                )
                for m in mailbox.messages.values()
            }

    def source_of(self, upn: str, message_id: str) -> str | None:
        with self._lock:
            mailbox = self._mailbox(upn)
            return self._sources.get(mailboxes.find_message(mailbox, message_id).immutable_id)

    def cached_properties(self, immutable_id: str) -> dict[str, Any] | None:
        with self._lock:
            properties = self._properties_cache.get(immutable_id)
            if properties is not None:
                self._properties_cache.move_to_end(immutable_id)
            return properties

    def cache_properties(self, immutable_id: str, properties: dict[str, Any]) -> None:
        # MIME never changes after add_message, so the parsed properties never go stale.
        with self._lock:
            self._properties_cache[immutable_id] = properties
            while len(self._properties_cache) > PROPERTIES_CACHE_SIZE:
                self._properties_cache.popitem(last=False)

    # ---- delta -------------------------------------------------------------------------

    def current_seq(self) -> int:
        with self._lock:
            return self._counter.value

    def sync_generation(self, user_id: str) -> int:
        with self._lock:
            return self._mailboxes[user_id].generation

    def expire_sync_state(self, upn: str | None = None) -> None:
        """Invalidate every delta and next link issued so far (one mailbox, or all)."""
        with self._lock:
            targets = list(self._mailboxes.values()) if upn is None else [self._mailbox(upn)]
            for mailbox in targets:
                mailbox.generation += 1

    def message_changes(
        self, user_id: str, folder_id: str, *, after: int, upto: int, cursor: int, limit: int
    ) -> tuple[list[DeltaEvent], int | None]:
        """Return up to ``limit`` message events of a folder in (after, upto], past ``cursor``.

        ``after == 0`` is an initial round: current items only, no tombstones. The second
        value is the cursor for the next page, or None when this page ends the round.
        """
        with self._lock:
            mailbox = self._mailboxes[user_id]
            log = mailbox.message_log.get(folder_id, [])

            def current(entry: LogEntry) -> DeltaEvent | None:
                if entry.removed is not None:
                    keep = after > 0 and entry.removed.entered_seq <= after
                    return entry.removed if keep else None
                message = mailbox.messages.get(entry.item_id)
                if message is None or message.folder_id != folder_id:
                    return None
                if message.modified_seq != entry.seq:
                    return None
                return mailboxes.message_info(message)

            return mailboxes.page_events(log, current, max(after, cursor), upto, limit)

    def folder_changes(
        self, user_id: str, *, after: int, upto: int, cursor: int, limit: int
    ) -> tuple[list[FolderInfo | Tombstone], int | None]:
        """Like ``message_changes`` for the mailbox's folder hierarchy (root excluded)."""
        with self._lock:
            mailbox = self._mailboxes[user_id]

            def current(entry: LogEntry) -> FolderInfo | Tombstone | None:
                if entry.removed is not None:
                    keep = after > 0 and entry.removed.entered_seq <= after
                    return entry.removed if keep else None
                folder = mailbox.folders.get(entry.item_id)
                if folder is None or folder.modified_seq != entry.seq:
                    return None
                return mailboxes.folder_info(mailbox, folder)

            return mailboxes.page_events(
                mailbox.folder_log, current, max(after, cursor), upto, limit
            )

    # ---- internals ---------------------------------------------------------------------

    def _mailbox(self, upn: str, *, create_user: bool = False) -> _Mailbox:
        user_id = self._upn_index.get(upn.lower())
        if user_id is None and create_user:
            # Corpora name custodians only through their messages; give them a user.
            user_id = self.add_user(SeedUser(upn, upn.split("@")[0], mail=upn))
        if user_id is None:
            raise KeyError(f"no user with user principal name {upn!r}")
        if user_id not in self._mailboxes:
            raise KeyError(f"user {upn!r} has no mailbox")
        return self._mailboxes[user_id]

    def _target_folder(
        self, upn: str, mailbox: _Mailbox, folder_path_or_id: tuple[str, ...] | str
    ) -> str:
        if isinstance(folder_path_or_id, str):
            if folder_path_or_id not in mailbox.folders:
                raise KeyError(f"no folder id {folder_path_or_id!r} in the mailbox of {upn!r}")
            return folder_path_or_id
        return self.add_folder(upn, folder_path_or_id)

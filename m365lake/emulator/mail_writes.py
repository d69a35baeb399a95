"""Mail writes of ``Tenant``: folder and message creation, MIME changes, message patches.

Every write takes the next value of the tenant's change sequence, so created folders and
messages show up in the next folder or message delta round like any other change.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from m365lake.emulator import mailboxes, records
from m365lake.emulator.records import FolderInfo, MessageInfo, SeqCounter, _Mailbox, _Message


class FolderExistsError(ValueError):
    """A sibling folder already has this display name (Exchange compares without case)."""


class MailWriteMixin:
    """Mail write half of ``Tenant``; callers pass user ids, as the Graph routes have them."""

    _lock: threading.RLock
    _counter: SeqCounter
    _mailboxes: dict[str, _Mailbox]
    _properties_cache: OrderedDict[str, dict[str, Any]]

    def create_folder(
        self, user_id: str, parent_id: str | None, name: str, *, hidden: bool = False
    ) -> FolderInfo:
        """Create one folder below ``parent_id`` (None: the top of the mailbox)."""
        with self._lock:
            mailbox = self._mailboxes[user_id]
            parent = parent_id or mailbox.root_id
            if parent not in mailbox.folders:
                raise KeyError(f"no folder {parent!r} in mailbox {user_id}")
            if mailboxes.child_named(mailbox, parent, name) is not None:
                raise FolderExistsError(name)
            folder = mailboxes.new_folder(mailbox, self._counter, parent, name, None, hidden=hidden)
            return mailboxes.folder_info(mailbox, folder)

    def create_message(
        self,
        user_id: str,
        folder_id: str,
        mime: bytes,
        *,
        is_read: bool,
        is_draft: bool,
        received_at: datetime,
        categories: Iterable[str] = (),
    ) -> MessageInfo:
        """Store a message created through Graph; its flags are fixed from here on."""
        with self._lock:
            mailbox = self._mailboxes[user_id]
            if folder_id not in mailbox.folders:
                raise KeyError(f"no folder {folder_id!r} in mailbox {user_id}")
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
                created_at=now,
                modified_at=now,
                created_seq=seq,
                modified_seq=seq,
                entered_seq=seq,
                is_draft=is_draft,
            )
            mailbox.messages[immutable_id] = message
            mailbox.rest_index[message.rest_id] = immutable_id
            mailboxes.log_upsert(mailbox, message)
            mailboxes.count(mailbox, self._counter, message, +1)
            return mailboxes.message_info(message)

    def replace_message_mime(self, user_id: str, message_id: str, mime: bytes) -> MessageInfo:
        """Store new MIME for a message (an attachment was added); it counts as an update."""
        with self._lock:
            mailbox = self._mailboxes[user_id]
            message = mailboxes.find_message(mailbox, message_id)
            message.mime = bytes(mime)
            self._properties_cache.pop(message.immutable_id, None)
            self._touch_message(mailbox, message)
            return mailboxes.message_info(message)

    def patch_message(
        self,
        user_id: str,
        message_id: str,
        *,
        is_read: bool | None = None,
        categories: Iterable[str] | None = None,
    ) -> MessageInfo:
        """Change the read state or categories, the properties a PATCH may change here."""
        with self._lock:
            mailbox = self._mailboxes[user_id]
            message = mailboxes.find_message(mailbox, message_id)
            if is_read is not None and is_read != message.is_read:
                mailboxes.count(mailbox, self._counter, message, -1)
                message.is_read = is_read
                mailboxes.count(mailbox, self._counter, message, +1)
            if categories is not None:
                message.categories = tuple(categories)
            self._touch_message(mailbox, message)
            return mailboxes.message_info(message)

    def remove_message(self, user_id: str, message_id: str) -> None:
        """Delete a message by id (Graph DELETE); raises KeyError when it is not there."""
        with self._lock:
            mailbox = self._mailboxes[user_id]
            mailboxes.remove_message(
                mailbox, self._counter, mailboxes.find_message(mailbox, message_id)
            )

    def _touch_message(self, mailbox: _Mailbox, message: _Message) -> None:
        message.modified_seq = self._counter.next()
        message.modified_at = datetime.now(UTC)
        mailboxes.log_upsert(mailbox, message)

"""Read helpers over one mailbox's records: folder paths, snapshots and change-log paging.

Callers hold the tenant lock. Each change takes the next number from the shared counter.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import TypeVar

from m365lake.emulator import records
from m365lake.emulator.records import (
    FolderInfo,
    LogEntry,
    MessageInfo,
    SeqCounter,
    Tombstone,
    _Folder,
    _Mailbox,
    _Message,
)

EventT = TypeVar("EventT")


def child_named(mailbox: _Mailbox, parent_id: str, name: str) -> _Folder | None:
    # Exchange folder names are unique among siblings regardless of case.
    folder_id = mailbox.children.get((parent_id, name.casefold()))
    return None if folder_id is None else mailbox.folders[folder_id]


def find_path(mailbox: _Mailbox, path: tuple[str, ...]) -> _Folder | None:
    folder: _Folder | None = mailbox.folders[mailbox.root_id]
    for name in path:
        assert folder is not None
        folder = child_named(mailbox, folder.id, name)
        if folder is None:
            return None
    return folder


def path_of(mailbox: _Mailbox, folder_id: str) -> tuple[str, ...]:
    names: list[str] = []
    folder = mailbox.folders[folder_id]
    while folder.parent_id is not None:
        names.append(folder.display_name)
        folder = mailbox.folders[folder.parent_id]
    return tuple(reversed(names))


def descendants(mailbox: _Mailbox, folder_id: str) -> list[str]:
    found: list[str] = []
    for folder in list(mailbox.folders.values()):
        if folder.parent_id == folder_id:
            found.append(folder.id)
            found.extend(descendants(mailbox, folder.id))
    return found


def folder_info(mailbox: _Mailbox, folder: _Folder) -> FolderInfo:
    children = sum(1 for f in mailbox.folders.values() if f.parent_id == folder.id)
    return FolderInfo(
        id=folder.id,
        parent_id=folder.parent_id,
        display_name=folder.display_name,
        well_known=folder.well_known,
        is_hidden=folder.is_hidden,
        child_folder_count=children,
        total_item_count=folder.total,
        unread_item_count=folder.unread,
        modified_seq=folder.modified_seq,
        change_key=records.change_key_for(folder.id, folder.modified_seq),
    )


def message_info(message: _Message) -> MessageInfo:
    return MessageInfo(
        immutable_id=message.immutable_id,
        rest_id=message.rest_id,
        folder_id=message.folder_id,
        mime=message.mime,
        is_read=message.is_read,
        categories=message.categories,
        received_at=message.received_at,
        created_at=message.created_at,
        modified_at=message.modified_at,
        modified_seq=message.modified_seq,
        change_key=records.change_key_for(message.immutable_id, message.modified_seq),
        is_draft=message.is_draft,
    )


def page_events(
    log: list[LogEntry],
    current: Callable[[LogEntry], EventT | None],
    cursor: int,
    upto: int,
    limit: int,
) -> tuple[list[EventT], int | None]:
    """Collect up to ``limit`` live events from a sequence-ordered log, after ``cursor``.

    ``current`` maps an entry to its event, or None for a stale entry. The second value is
    the sequence number to continue after, or None when no entries up to ``upto`` remain.
    """
    events: list[EventT] = []
    index = bisect.bisect_right(log, cursor, key=lambda entry: entry.seq)
    last = cursor
    while index < len(log) and log[index].seq <= upto:
        event = current(log[index])
        last = log[index].seq
        index += 1
        if event is not None:
            events.append(event)
            if len(events) == limit:
                break
    more = index < len(log) and log[index].seq <= upto
    return events, (last if more else None)


def create_mailbox(
    user_id: str, counter: SeqCounter, standard: tuple[tuple[str | None, str, bool], ...]
) -> _Mailbox:
    root_id = records.derive_id(records.FOLDER_PREFIX, user_id, "root")
    mailbox = _Mailbox(user_id=user_id, root_id=root_id)
    seq = counter.next()
    mailbox.folders[root_id] = _Folder(
        root_id, None, "Top of Information Store", "msgfolderroot", False, seq, seq
    )
    for well_known, name, hidden in standard:
        new_folder(mailbox, counter, root_id, name, well_known, hidden=hidden)
    return mailbox


def new_folder(
    mailbox: _Mailbox,
    counter: SeqCounter,
    parent_id: str,
    name: str,
    well_known: str | None,
    *,
    hidden: bool,
) -> _Folder:
    mailbox.folder_counter += 1
    folder_id = records.derive_id(
        records.FOLDER_PREFIX, mailbox.user_id, "folder", str(mailbox.folder_counter)
    )
    seq = counter.next()
    folder = _Folder(folder_id, parent_id, name, well_known, hidden, seq, seq)
    mailbox.folders[folder_id] = folder
    mailbox.children[(parent_id, name.casefold())] = folder_id
    mailbox.folder_log.append(LogEntry(seq, folder_id))
    touch_folder(mailbox, counter, parent_id)
    return folder


def touch_folder(mailbox: _Mailbox, counter: SeqCounter, folder_id: str) -> None:
    """Record a folder update (for mailFolder delta); the root is never reported."""
    folder = mailbox.folders.get(folder_id)
    if folder is None or folder.id == mailbox.root_id:
        return
    folder.modified_seq = counter.next()
    mailbox.folder_log.append(LogEntry(folder.modified_seq, folder_id))


def find_message(mailbox: _Mailbox, message_id: str) -> _Message:
    immutable_id = (
        message_id if message_id in mailbox.messages else mailbox.rest_index.get(message_id)
    )
    if immutable_id is None:
        raise KeyError(f"no message {message_id!r} in mailbox {mailbox.user_id}")
    return mailbox.messages[immutable_id]


def log_upsert(mailbox: _Mailbox, message: _Message) -> None:
    log = mailbox.message_log.setdefault(message.folder_id, [])
    log.append(LogEntry(message.modified_seq, message.immutable_id))


def remove_from_folder(mailbox: _Mailbox, counter: SeqCounter, message: _Message) -> None:
    count(mailbox, counter, message, -1)
    seq = counter.next()
    tombstone = Tombstone(seq, message.immutable_id, message.rest_id, message.entered_seq)
    log = mailbox.message_log.setdefault(message.folder_id, [])
    log.append(LogEntry(seq, message.immutable_id, tombstone))


def remove_message(mailbox: _Mailbox, counter: SeqCounter, message: _Message) -> None:
    remove_from_folder(mailbox, counter, message)
    del mailbox.messages[message.immutable_id]
    del mailbox.rest_index[message.rest_id]


def count(mailbox: _Mailbox, counter: SeqCounter, message: _Message, sign: int) -> None:
    folder = mailbox.folders[message.folder_id]
    folder.total += sign
    if not message.is_read:
        folder.unread += sign
    # Exchange reports count changes as folder updates in mailFolder delta.
    touch_folder(mailbox, counter, folder.id)

"""Archived state of one mailbox: the latest version of each folder and message.

A backup compares Graph's changes against this to write a version only when something
changed, and to turn tombstones and resyncs into deletions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from m365lake.lake import Lake, reading
from m365lake.lake.reading import TableScan


@dataclass(frozen=True)
class KnownMessage:
    """The latest archived version of a message."""

    change_key: str | None
    folder_id: str | None
    deleted: bool


@dataclass(frozen=True)
class KnownFolder:
    """The latest archived version of a mail folder."""

    parent_folder_id: str | None
    display_name: str
    deleted: bool


@dataclass
class MailboxState:
    """Archived folders and messages of one mailbox, keyed by Graph id."""

    folders: dict[str, KnownFolder] = field(default_factory=dict)
    messages: dict[str, KnownMessage] = field(default_factory=dict)

    def live_messages_in(self, folder_id: str) -> set[str]:
        return {
            message_id
            for message_id, known in self.messages.items()
            if known.folder_id == folder_id and not known.deleted
        }


def _partition_files(lake: Lake, table: str, mailbox_id: str) -> TableScan:
    marker = f"mailbox_id={mailbox_id}"
    entries = [
        entry
        for entry in lake.committed_entries(table)
        if marker in PurePosixPath(entry["path"]).parts
    ]
    return TableScan(lake, entries)


_OPTIONS = "hive_partitioning = false, union_by_name = true"

_LATEST_MESSAGES = """
SELECT message_id, change_key, folder_id, change = 'deleted'
FROM {source}
QUALIFY row_number() OVER (PARTITION BY message_id ORDER BY captured_at DESC) = 1
"""

_LATEST_FOLDERS = """
SELECT folder_id, parent_folder_id, display_name, change = 'deleted'
FROM {source}
QUALIFY row_number() OVER (PARTITION BY folder_id ORDER BY captured_at DESC) = 1
"""


def load_mailbox_state(lake: Lake, mailbox_id: str) -> MailboxState:
    """Read the latest committed version of every folder and message of ``mailbox_id``."""
    state = MailboxState()
    with reading.connect(lake) as db:
        folders = _partition_files(lake, "folders", mailbox_id)
        if folders:
            query = _LATEST_FOLDERS.format(source=folders.sql(_OPTIONS, connection=db))
            with folders.errors():
                rows = db.execute(query).fetchall()
            for folder_id, parent, name, deleted in rows:
                state.folders[folder_id] = KnownFolder(parent, name or "", bool(deleted))
        messages = _partition_files(lake, "messages", mailbox_id)
        if messages:
            query = _LATEST_MESSAGES.format(source=messages.sql(_OPTIONS, connection=db))
            with messages.errors():
                rows = db.execute(query).fetchall()
            for message_id, change_key, folder_id, deleted in rows:
                state.messages[message_id] = KnownMessage(change_key, folder_id, bool(deleted))
    return state

"""Archived state of one mailbox: the latest version of each folder and message.

A backup compares Graph's changes against this to write a version only when something
changed, and to turn tombstones and resyncs into deletions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from m365lake.lake import Lake


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


def _partition_files(lake: Lake, table: str, mailbox_id: str) -> list[str]:
    marker = f"mailbox_id={mailbox_id}"
    return [str(path) for path in lake.committed_files(table) if marker in Path(path).parts]


_LATEST_MESSAGES = """
SELECT message_id, change_key, folder_id, change = 'deleted'
FROM read_parquet($files, hive_partitioning = false, union_by_name = true)
QUALIFY row_number() OVER (PARTITION BY message_id ORDER BY captured_at DESC) = 1
"""

_LATEST_FOLDERS = """
SELECT folder_id, parent_folder_id, display_name, change = 'deleted'
FROM read_parquet($files, hive_partitioning = false, union_by_name = true)
QUALIFY row_number() OVER (PARTITION BY folder_id ORDER BY captured_at DESC) = 1
"""


def load_mailbox_state(lake: Lake, mailbox_id: str) -> MailboxState:
    """Read the latest committed version of every folder and message of ``mailbox_id``."""
    state = MailboxState()
    with duckdb.connect() as db:
        folder_files = _partition_files(lake, "folders", mailbox_id)
        if folder_files:
            for folder_id, parent, name, deleted in db.execute(
                _LATEST_FOLDERS, {"files": folder_files}
            ).fetchall():
                state.folders[folder_id] = KnownFolder(parent, name or "", bool(deleted))
        message_files = _partition_files(lake, "messages", mailbox_id)
        if message_files:
            for message_id, change_key, folder_id, deleted in db.execute(
                _LATEST_MESSAGES, {"files": message_files}
            ).fetchall():
                state.messages[message_id] = KnownMessage(change_key, folder_id, bool(deleted))
    return state

"""Archived state of one mailbox's contacts: the latest version of each folder and contact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from m365lake.lake import Lake, reading
from m365lake.lake.reading import TableScan


@dataclass(frozen=True)
class KnownContactFolder:
    """The latest archived version of a contact folder."""

    parent_folder_id: str | None
    display_name: str
    deleted: bool


@dataclass(frozen=True)
class KnownContact:
    """The latest archived version of a contact."""

    change_key: str | None
    folder_id: str | None
    deleted: bool


@dataclass
class ContactBookState:
    """Archived contact folders and contacts of one mailbox, keyed by Graph id."""

    folders: dict[str, KnownContactFolder] = field(default_factory=dict)
    contacts: dict[str, KnownContact] = field(default_factory=dict)

    def live_contacts_in(self, folder_id: str) -> set[str]:
        return {
            contact_id
            for contact_id, known in self.contacts.items()
            if known.folder_id == folder_id and not known.deleted
        }


_OPTIONS = (
    "hive_partitioning = false, union_by_name = true, filename = true, file_row_number = true"
)


def _latest(
    lake: Lake, table: str, key: str, columns: Sequence[str], mailbox_id: str
) -> list[dict[str, Any]]:
    """Return ``columns`` of the latest row per ``key`` in the mailbox's partition."""
    marker = f"mailbox_id={mailbox_id}"
    scan = TableScan(
        lake,
        [
            entry
            for entry in lake.committed_entries(table)
            if marker in PurePosixPath(entry["path"]).parts
        ],
    )
    if not scan:
        return []
    selected = ", ".join(f'"{name}"' for name in columns)
    # Files are listed in commit order, so file position and row number order versions
    # captured at the same instant.
    with reading.connect(lake) as db, scan.errors():
        query = (
            f"SELECT {selected} FROM {scan.sql(_OPTIONS, connection=db)} "
            f'QUALIFY row_number() OVER (PARTITION BY "{key}" ORDER BY captured_at DESC, '
            "list_position($files, filename) DESC, file_row_number DESC) = 1"
        )
        cursor = db.execute(query, {"files": scan.locations})
        names = [column[0] for column in cursor.description or []]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def load_contact_state(lake: Lake, mailbox_id: str) -> ContactBookState:
    """Read the latest committed version of every contact folder and contact of a mailbox."""
    state = ContactBookState()
    folders = _latest(
        lake,
        "contact_folders",
        "folder_id",
        ["folder_id", "parent_folder_id", "display_name", "change"],
        mailbox_id,
    )
    for row in folders:
        state.folders[row["folder_id"]] = KnownContactFolder(
            row["parent_folder_id"], row["display_name"] or "", row["change"] == "deleted"
        )
    contacts = _latest(
        lake,
        "contacts",
        "contact_id",
        ["contact_id", "change_key", "folder_id", "change"],
        mailbox_id,
    )
    for row in contacts:
        state.contacts[row["contact_id"]] = KnownContact(
            row["change_key"], row["folder_id"], row["change"] == "deleted"
        )
    return state

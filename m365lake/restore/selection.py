"""Choose what a restore brings back: archived items by KQL, ids, custodian or path, as of a time.

All criteria of a selection must hold together. The state "as of" a time is the newest
version of each item captured at or before it, so items the tenant deleted later are
included and items already deleted at that time are not. Without a time, the newest
archived version of every item is used, including items the tenant has deleted since:
bringing those back is what most restores are for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from m365lake.catalog import connect
from m365lake.discovery.custodians import resolve_custodian
from m365lake.discovery.errors import CustodianNotFoundError
from m365lake.discovery.search_api import search_hits
from m365lake.errors import RestoreError
from m365lake.lake import Lake

logger = logging.getLogger(__name__)


class SelectionError(RestoreError):
    """A restore selection is invalid or matches nothing that can be restored."""


@dataclass(frozen=True)
class Selection:
    """Criteria for the archived items a restore brings back; every criterion given must match."""

    kql: str | None = None
    """A compliance search query; matched against the search index."""
    item_ids: tuple[str, ...] = ()
    """Message ids or drive item ids as archived."""
    custodian: str | None = None
    """A user principal name or id: that user's mailbox and OneDrive."""
    folder: str | None = None
    """A mail folder path such as ``Inbox/Projects``; its subfolders are included."""
    path: str | None = None
    """A drive path prefix such as ``/Documents/Reports``; items below it are included."""
    drive_id: str | None = None
    """Only this drive (a OneDrive or a document library)."""
    as_of: datetime | None = None
    """Restore the state at this time; None means the newest archived versions."""
    workloads: tuple[str, ...] = ()
    """Restore only these workloads (``mail``, ``files``, ``calendar``, ``contacts``,
    ``teams``). Empty: mail, files and Teams as the other criteria allow; calendar events
    and contacts are restored only when named here. Teams messages are planned as
    unrestorable (``m365lake.restore.teams``)."""

    def __post_init__(self) -> None:
        if self.as_of is not None and self.as_of.tzinfo is None:
            raise SelectionError(
                f"the point in time {self.as_of.isoformat()} has no time zone; give it in UTC, "
                "for example 2026-11-30T17:00:00Z"
            )
        if self.as_of is not None and self.as_of > datetime.now(UTC):
            raise SelectionError(
                f"the point in time {self.as_of.isoformat()} is in the future; the archive "
                "cannot hold a state later than now"
            )

    @property
    def is_empty(self) -> bool:
        return not (
            self.kql or self.item_ids or self.custodian or self.folder or self.path or self.drive_id
        )

    @property
    def wants_mail(self) -> bool:
        named = not self.workloads or "mail" in self.workloads
        return named and self.path is None and self.drive_id is None

    @property
    def wants_files(self) -> bool:
        return (not self.workloads or "files" in self.workloads) and self.folder is None

    @property
    def searched_workloads(self) -> list[str]:
        """Return the workloads this selection searches, as the ``select_*`` functions do."""
        searched = ["mail"] if self.wants_mail else []
        searched += ["files"] if self.wants_files else []
        searched += [name for name in ("calendar", "contacts") if name in self.workloads]
        # The same rule as ``restore.teams.wants_teams``, which imports this module.
        teams_named = not self.workloads or "teams" in self.workloads
        other_criteria = self.folder is not None or self.path is not None or self.drive_id
        if teams_named and not other_criteria:
            searched.append("teams")
        return searched


def parse_point_in_time(text: str) -> datetime:
    """Return the UTC time of an ISO 8601 text with a zone, such as ``2026-11-30T17:00:00Z``."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SelectionError(
            f"{text!r} is not an ISO 8601 time; write it like 2026-11-30T17:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise SelectionError(
            f"{text!r} has no time zone; add Z for UTC or an offset such as +01:00"
        )
    return moment.astimezone(UTC)


def check_selection(selection: Selection) -> None:
    """Raise SelectionError when the selection is empty or mixes mail and file criteria."""
    if selection.is_empty:
        raise SelectionError(
            "the restore selects nothing: give a KQL query, item ids, a custodian, a mail "
            "folder or a drive path (a whole tenant is never restored by default)"
        )
    if selection.folder is not None and (selection.path or selection.drive_id):
        raise SelectionError(
            "a mail folder and a drive path or drive id cannot be combined: a folder selects "
            "mail and a path selects files. Run two restores instead"
        )


def _trimmed(path: str) -> str:
    return path.strip().strip("/")


def _under(path: str | None, prefix: str) -> bool:
    """Return whether ``path`` is ``prefix`` or below it, comparing without case as M365 does."""
    if path is None:
        return False
    text = _trimmed(path).casefold()
    wanted = _trimmed(prefix).casefold()
    return not wanted or text == wanted or text.startswith(wanted + "/")


def mailbox_of(lake: Lake, custodian: str) -> str | None:
    """Return the archived mailbox id of a user principal name or id, or None."""
    return _container(lake, "mailbox", custodian)


def _container(lake: Lake, kind: str, reference: str) -> str | None:
    try:
        return resolve_custodian(lake, kind, reference).container_id
    except CustodianNotFoundError:
        return None


def _rows(
    lake: Lake, table: str, versions_view: str, keys: Sequence[str], as_of: datetime | None
) -> list[dict[str, Any]]:
    with connect(lake) as db:
        if as_of is None:
            partition = ", ".join(keys)
            cursor = db.execute(
                f"SELECT * FROM {versions_view} QUALIFY row_number() OVER "
                f"(PARTITION BY {partition} ORDER BY captured_at DESC) = 1"
            )
        else:
            cursor = db.execute(f"SELECT * FROM {table}_as_of(?)", [as_of])
        names = [column[0] for column in cursor.description or []]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def _kql_items(lake: Lake, selection: Selection, workload: str) -> set[tuple[str, str]] | None:
    if not selection.kql:
        return None
    return {
        (hit.container_id, hit.item_id)
        for hit in search_hits(lake, selection.kql, purpose="the restore --kql")
        if hit.workload == workload
    }


def select_messages(lake: Lake, selection: Selection) -> list[dict[str, Any]]:
    """Return the archived message rows the selection picks, in mailbox and folder order."""
    check_selection(selection)
    if not selection.wants_mail:
        return []
    mailbox = None
    if selection.custodian:
        mailbox = _container(lake, "mailbox", selection.custodian)
        if mailbox is None:
            return []

    matched = _kql_items(lake, selection, "mail")
    ids = set(selection.item_ids)
    rows = []
    for row in _rows(
        lake, "messages", "message_versions", ("mailbox_id", "message_id"), selection.as_of
    ):
        key = (row["mailbox_id"], row["message_id"])
        if mailbox is not None and row["mailbox_id"] != mailbox:
            continue
        if ids and row["message_id"] not in ids:
            continue
        if selection.folder is not None and not _under(row["folder_path"], selection.folder):
            continue
        if matched is not None and key not in matched:
            continue
        rows.append(row)
    rows.sort(
        key=lambda row: (
            row["mailbox_id"],
            row["folder_path"] or "",
            row["received_at"] or datetime.min.replace(tzinfo=UTC),
            row["message_id"],
        )
    )
    logger.info("restore selection picked %d messages", len(rows))
    return rows


def select_files(lake: Lake, selection: Selection) -> list[dict[str, Any]]:
    """Return the archived drive item rows (files and folders) the selection picks, by path."""
    check_selection(selection)
    if not selection.wants_files:
        return []
    drive = selection.drive_id
    if selection.custodian:
        owned = _container(lake, "onedrive", selection.custodian)
        if owned is None or (drive is not None and drive != owned):
            return []
        drive = owned
    matched = _kql_items(lake, selection, "files")
    ids = set(selection.item_ids)
    rows = []
    for row in _rows(
        lake, "drive_items", "drive_item_versions", ("drive_id", "item_id"), selection.as_of
    ):
        if drive is not None and row["drive_id"] != drive:
            continue
        if ids and row["item_id"] not in ids:
            continue
        if selection.path is not None and not _under(row["path"], selection.path):
            continue
        if matched is not None and (row["drive_id"], row["item_id"]) not in matched:
            continue
        rows.append(row)
    rows.sort(key=lambda row: (row["drive_id"], row["path"] or "", row["item_id"]))
    logger.info("restore selection picked %d drive items", len(rows))
    return rows


def folders_as_of(lake: Lake, mailbox_id: str, as_of: datetime | None) -> list[dict[str, Any]]:
    """Return the archived mail folders of ``mailbox_id`` as of ``as_of`` (deleted ones too).

    Without a time, each folder's newest archived version, including folders the tenant
    deleted, so their messages can be put back in place.
    """
    return [
        row
        for row in _rows(lake, "folders", "folder_versions", ("mailbox_id", "folder_id"), as_of)
        if row["mailbox_id"] == mailbox_id
    ]


def require_some(
    messages: Sequence[dict[str, Any]], files: Sequence[dict[str, Any]], selection: Selection
) -> None:
    """Raise SelectionError naming the criteria when a selection matched no item."""
    if messages or files:
        return
    given = {
        "kql": selection.kql,
        "ids": ", ".join(selection.item_ids) or None,
        "custodian": selection.custodian,
        "folder": selection.folder,
        "path": selection.path,
        "drive": selection.drive_id,
        "as of": selection.as_of.isoformat() if selection.as_of else None,
    }
    shown = "; ".join(f"{name} {value!r}" for name, value in given.items() if value)
    searched = selection.searched_workloads
    unsearched = [name for name in ("calendar", "contacts") if name not in searched]
    verb = "are" if len(unsearched) > 1 else "is"
    suggestion = (
        f" {' and '.join(unsearched).capitalize()} {verb} searched only when named: add "
        f"{' or '.join(f'--workload {name}' for name in unsearched)} to search them."
        if unsearched
        else ""
    )
    raise SelectionError(
        f"the restore selection ({shown}) matches no archived item in the workloads searched "
        f"({', '.join(searched) or 'none'}).{suggestion} Check the names against "
        'the archive, for example with: m365lake sql "SELECT DISTINCT folder_path FROM '
        'messages" or "SELECT path FROM files"'
    )

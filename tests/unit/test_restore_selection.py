"""Restore selections: point in time, deleted items, folders, paths, custodians, ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from m365lake.lake import Lake
from m365lake.restore.selection import (
    Selection,
    SelectionError,
    folders_as_of,
    require_some,
    select_files,
    select_messages,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def message(
    message_id: str, change: str, at: datetime, folder_path: str, **fields: Any
) -> dict[str, Any]:
    row = {
        "mailbox_id": fields.pop("mailbox_id", "u1"),
        "message_id": message_id,
        "change": change,
        "captured_at": at,
        "folder_id": folder_path.lower(),
        "folder_path": folder_path,
        "subject": fields.pop("subject", message_id),
        "mime_sha256": fields.pop("mime_sha256", f"sha-{message_id}-{at:%d}"),
    }
    if change == "deleted":
        row["deleted_at"] = at
    row.update(fields)
    return row


def item(item_id: str, change: str, at: datetime, path: str, **fields: Any) -> dict[str, Any]:
    row = {
        "drive_id": fields.pop("drive_id", "d1"),
        "item_id": item_id,
        "change": change,
        "captured_at": at,
        "path": path,
        "name": path.rsplit("/", 1)[-1],
        "is_folder": fields.pop("is_folder", False),
        "content_sha256": fields.pop("content_sha256", f"sha-{item_id}-{at:%d}"),
    }
    if change == "deleted":
        row["deleted_at"] = at
    row.update(fields)
    return row


def commit(lake: Lake, run_id: str, **tables: list[dict[str, Any]]) -> None:
    with lake.begin(run_id=run_id, kind="test", container=None) as tx:
        for table, rows in tables.items():
            if table in ("messages", "folders"):
                partition = {"mailbox_id": rows[0]["mailbox_id"]}
            elif table == "drive_items":
                partition = {"drive_id": rows[0]["drive_id"]}
            else:
                partition = {}
            tx.write_rows(table, rows, partition=partition)
        tx.commit()


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """Day 0: m1, m2 in Inbox/Projects and m3 in Inbox.

    Day 1: m1 edited, m2 deleted. Day 2: m3 deleted.
    """
    lake = Lake.open(tmp_path / "lake")
    commit(
        lake,
        "r1",
        mailboxes=[
            {"mailbox_id": "u1", "user_principal_name": "alice@contoso.example", "captured_at": T0},
            {"mailbox_id": "u2", "user_principal_name": "bob@contoso.example", "captured_at": T0},
        ],
        drives=[
            {
                "drive_id": "d1",
                "owner_kind": "user",
                "owner_name": "alice@contoso.example",
                "captured_at": T0,
            }
        ],
    )
    commit(
        lake,
        "r2",
        messages=[
            message("m1", "created", T0, "Inbox/Projects", subject="first draft"),
            message("m2", "created", T0, "Inbox/Projects"),
            message("m3", "created", T0, "Inbox"),
        ],
        folders=[
            {
                "mailbox_id": "u1",
                "folder_id": "inbox",
                "change": "created",
                "captured_at": T0,
                "display_name": "Inbox",
                "folder_path": "Inbox",
            },
            {
                "mailbox_id": "u1",
                "folder_id": "inbox/projects",
                "parent_folder_id": "inbox",
                "change": "created",
                "captured_at": T0,
                "display_name": "Projects",
                "folder_path": "Inbox/Projects",
            },
        ],
    )
    commit(lake, "r3", messages=[message("m9", "created", T0, "Inbox", mailbox_id="u2")])
    commit(
        lake,
        "r4",
        messages=[
            message("m1", "updated", T0 + DAY, "Inbox/Projects", subject="final"),
            message("m2", "deleted", T0 + DAY, "Inbox/Projects"),
        ],
        folders=[
            {
                "mailbox_id": "u1",
                "folder_id": "inbox/projects",
                "change": "deleted",
                "captured_at": T0 + DAY,
                "deleted_at": T0 + DAY,
                "display_name": "Projects",
                "folder_path": "Inbox/Projects",
            },
        ],
    )
    commit(lake, "r5", messages=[message("m3", "deleted", T0 + 2 * DAY, "Inbox")])
    commit(
        lake,
        "r6",
        drive_items=[
            item("f0", "created", T0, "/Documents", is_folder=True),
            item("f1", "created", T0, "/Documents/report.docx"),
            item("f2", "created", T0, "/Documents Old/notes.txt"),
        ],
    )
    commit(lake, "r7", drive_items=[item("f1", "updated", T0 + DAY, "/Documents/report.docx")])
    return lake


def ids(rows: list[dict[str, Any]], key: str) -> list[str]:
    return [row[key] for row in rows]


def test_newest_versions_include_deleted_items(lake: Lake) -> None:
    rows = select_messages(lake, Selection(custodian="alice@contoso.example"))

    assert ids(rows, "message_id") == ["m3", "m1", "m2"]
    assert rows[1]["subject"] == "final"
    assert rows[2]["change"] == "created"


def test_as_of_picks_the_version_of_that_time(lake: Lake) -> None:
    rows = select_messages(lake, Selection(custodian="u1", as_of=T0 + timedelta(hours=12)))

    assert ids(rows, "message_id") == ["m3", "m1", "m2"]
    assert rows[1]["subject"] == "first draft"


def test_as_of_leaves_out_items_already_deleted(lake: Lake) -> None:
    rows = select_messages(lake, Selection(custodian="u1", as_of=T0 + DAY + timedelta(hours=1)))

    assert ids(rows, "message_id") == ["m3", "m1"]


def test_folder_selects_subtree_without_case(lake: Lake) -> None:
    rows = select_messages(lake, Selection(folder="inbox/PROJECTS"))

    assert ids(rows, "message_id") == ["m1", "m2"]


def test_folder_prefix_needs_whole_names(lake: Lake) -> None:
    assert select_messages(lake, Selection(folder="Inbox/Proj")) == []


def test_item_ids_select_across_mailboxes(lake: Lake) -> None:
    rows = select_messages(lake, Selection(item_ids=("m9", "m3")))

    assert ids(rows, "message_id") == ["m3", "m9"]


def test_custodian_without_mailbox_selects_no_mail(lake: Lake) -> None:
    assert select_messages(lake, Selection(custodian="nobody@contoso.example")) == []


def test_path_selects_files_only(lake: Lake) -> None:
    selection = Selection(path="/Documents")

    assert select_messages(lake, selection) == []
    assert ids(select_files(lake, selection), "item_id") == ["f0", "f1"]


def test_file_as_of_gives_older_content(lake: Lake) -> None:
    rows = select_files(lake, Selection(item_ids=("f1",), as_of=T0 + timedelta(hours=1)))

    assert [row["content_sha256"] for row in rows] == ["sha-f1-01"]


def test_custodian_selects_their_onedrive(lake: Lake) -> None:
    rows = select_files(lake, Selection(custodian="alice@contoso.example"))

    assert ids(rows, "item_id") == ["f0", "f2", "f1"]


def test_folders_as_of_include_deleted_folders(lake: Lake) -> None:
    names = sorted(row["folder_path"] for row in folders_as_of(lake, "u1", None))

    assert names == ["Inbox", "Inbox/Projects"]


def test_empty_selection_is_rejected(lake: Lake) -> None:
    with pytest.raises(SelectionError, match="selects nothing"):
        select_messages(lake, Selection(as_of=T0))


def test_folder_and_path_together_are_rejected(lake: Lake) -> None:
    with pytest.raises(SelectionError, match="cannot be combined"):
        select_files(lake, Selection(folder="Inbox", path="/Documents"))


def test_naive_or_future_time_is_rejected() -> None:
    with pytest.raises(SelectionError, match="no time zone"):
        Selection(custodian="u1", as_of=datetime(2024, 1, 1))
    with pytest.raises(SelectionError, match="in the future"):
        Selection(custodian="u1", as_of=datetime.now(UTC) + DAY)


def test_no_match_names_the_criteria(lake: Lake) -> None:
    selection = Selection(folder="Inbox/Nope")

    with pytest.raises(SelectionError, match="folder 'Inbox/Nope'"):
        require_some(select_messages(lake, selection), select_files(lake, selection), selection)


def test_no_match_names_workloads_searched(lake: Lake) -> None:
    selection = Selection(item_ids=("AAMkEvent1",))

    with pytest.raises(SelectionError) as caught:
        require_some([], [], selection)

    message = str(caught.value)
    assert "matches no archived item in the workloads searched (mail, files, teams)" in message
    assert "Calendar and contacts are searched only when named" in message
    assert "add --workload calendar or --workload contacts" in message


def test_no_match_with_calendar_named(lake: Lake) -> None:
    selection = Selection(item_ids=("AAMkEvent1",), workloads=("calendar",))

    with pytest.raises(SelectionError) as caught:
        require_some([], [], selection)

    message = str(caught.value)
    assert "in the workloads searched (calendar)" in message
    assert "Contacts is searched only when named: add --workload contacts" in message

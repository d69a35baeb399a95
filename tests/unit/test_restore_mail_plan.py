"""Folder mapping of the mail restore planner, and attachment comparison in verify."""

from __future__ import annotations

from typing import Any

from m365lake.restore.mail_plan import LiveMailbox, _needed_folders, _sibling_names
from m365lake.restore.mail_verify import compare_attachments
from m365lake.restore.model import Severity
from m365lake.sources.mime import AttachmentInfo

ROOT = "root"


def _folder(parent: str, name: str) -> dict[str, Any]:
    return {"parent_folder_id": parent, "display_name": name}


ARCHIVED = {
    "inbox": _folder(ROOT, "Inbox"),
    "projects": _folder("inbox", "Projects"),
    "deep": _folder("projects", "Deep"),
    "old-x": _folder("inbox", "X"),
    "new-x": _folder("inbox", "x"),
    "sent": _folder(ROOT, "Sent Items"),
}


def test_needed_folders_parents_first() -> None:
    needed = _needed_folders(ARCHIVED, {"projects"})
    assert needed == ["inbox", "projects", "deep"]


def test_needed_folders_include_subfolders() -> None:
    needed = _needed_folders(ARCHIVED, {"inbox"})
    assert needed[0] == "inbox"
    assert set(needed) == {"inbox", "projects", "deep", "old-x", "new-x"}
    assert needed.index("projects") < needed.index("deep")


def test_same_name_siblings_stay_apart() -> None:
    names = _sibling_names(["inbox", "old-x", "new-x"], ARCHIVED, None)
    assert names["inbox"] == "Inbox"
    assert names["new-x"] == "x"
    assert names["old-x"] == "X (2)"


def test_live_sibling_keeps_its_name() -> None:
    live = LiveMailbox("mailbox", ROOT, {"old-x": ("inbox", "X")})
    names = _sibling_names(["old-x", "new-x"], ARCHIVED, live)
    assert names["old-x"] == "X"
    assert names["new-x"] == "x (2)"


def test_child_named_skips_taken_folders() -> None:
    live = LiveMailbox("mailbox", ROOT, {"a": (ROOT, "Inbox"), "b": ("a", "Projects")})
    assert live.child_named(None, "inbox", set()) == "a"
    assert live.child_named("a", "PROJECTS", set()) == "b"
    assert live.child_named("a", "Projects", {"b"}) is None


def _attachment(kind: str, name: str, sha: str) -> AttachmentInfo:
    return AttachmentInfo(1, kind, name, "application/octet-stream", 1, False, None, sha)


def test_attachment_hashes_compared_as_multisets() -> None:
    archived = [_attachment("file", "a", "1"), _attachment("file", "b", "2")]
    live = [_attachment("file", "b", "2"), _attachment("file", "a", "1")]
    assert compare_attachments(archived, live) == []


def test_missing_attachment_is_a_mismatch() -> None:
    archived = [_attachment("file", "a", "1"), _attachment("file", "b", "2")]
    found = compare_attachments(archived, [_attachment("file", "a", "1")])
    assert ("attachment_count", "2", "1", Severity.MISMATCH) in found
    assert ("attachment:b", "2", None, Severity.MISMATCH) in found


def test_rerendered_item_attachment_is_a_rewrite() -> None:
    archived = [_attachment("item", "note", "1")]
    found = compare_attachments(archived, [_attachment("item", "note", "9")])
    assert found == [("attachment:note", "1", "re-rendered by Exchange", Severity.REWRITE)]

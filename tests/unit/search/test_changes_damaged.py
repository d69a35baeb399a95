"""A damaged lake table file is named in a LakeIntegrityError with the next steps."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from m365lake.errors import LakeIntegrityError
from m365lake.lake import Lake
from m365lake.search.changes import CommittedFile, all_versions, committed_files, read_rows

CAPTURED = datetime(2024, 3, 1, 12, tzinfo=UTC)


def commit_messages(lake: Lake, run_id: str, mailbox: str) -> None:
    rows = [
        {
            "mailbox_id": mailbox,
            "message_id": f"{mailbox}-m{index}",
            "change": "created",
            "captured_at": CAPTURED,
            "subject": f"subject {index}",
            "mime_sha256": f"{index:064x}",
        }
        for index in range(2)
    ]
    with lake.begin(run_id=run_id, kind="mail", container=mailbox) as tx:
        tx.write_rows("messages", rows, partition={"mailbox_id": mailbox})
        tx.commit()


def truncate(lake: Lake, file: CommittedFile) -> Path:
    path = lake.storage.path(file.entry["path"])
    path.write_bytes(path.read_bytes()[:40])
    return path


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = Lake.open(tmp_path / "lake")
    commit_messages(lake, "run-1", "u1")
    commit_messages(lake, "run-2", "u2")
    return lake


def test_read_rows_names_truncated_file(lake: Lake) -> None:
    files = committed_files(lake, lake.manifests())
    [group, _] = list(all_versions(lake, "messages", files).versions())
    truncate(lake, files[0])

    with pytest.raises(LakeIntegrityError) as caught:
        list(read_rows(lake, group))

    assert files[0].entry["path"] in str(caught.value)
    assert "m365lake verify" in str(caught.value)


def test_locate_names_only_damaged_file(lake: Lake) -> None:
    files = committed_files(lake, lake.manifests())
    truncate(lake, files[1])

    with pytest.raises(LakeIntegrityError) as caught:
        all_versions(lake, "messages", files)

    assert files[1].entry["path"] in str(caught.value)
    assert files[0].entry["path"] not in str(caught.value)


def test_missing_file_keeps_reader_error(lake: Lake) -> None:
    """A purge deletes the files it replaced; the update runs again instead."""
    files = committed_files(lake, lake.manifests())
    lake.storage.path(files[1].entry["path"]).unlink()

    with pytest.raises(duckdb.IOException, match=r"No files found|does not exist"):
        all_versions(lake, "messages", files)

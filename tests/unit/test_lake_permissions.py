"""Lake files and folders are private to their owner, whatever the process umask."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from m365lake.lake import Lake


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run with the common umask 022, under which new files default to world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_lake_is_private(tmp_path: Path, open_umask: None) -> None:
    lake = Lake.open(tmp_path / "nested" / "lake", create=True)
    with lake.begin(run_id="r1", kind="test", container=None) as tx:
        tx.write_rows(
            "mailboxes", [{"mailbox_id": "u1", "user_principal_name": "a@b.example"}], partition={}
        )
        tx.set_state("mail/u1/delta", {"link": "x"})
        tx.commit()
    lake.store_content(os.urandom(4 << 20))

    directories = [lake.root, *(path for path in lake.root.rglob("*") if path.is_dir())]
    files = [path for path in lake.root.rglob("*") if path.is_file()]
    assert {mode(directory) for directory in directories} == {0o700}
    assert any(path.suffix == ".parquet" for path in files)
    assert any("blobs" in path.parts for path in files)
    assert {(path.relative_to(lake.root).parts[0], mode(path)) for path in files} <= {
        (part, 0o600) for part in ("tables", "commits", "state", "blobs")
    }


def test_shared_lake_folder_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "shared-lake"
    Lake.open(root, create=True)
    root.chmod(0o755)

    with caplog.at_level(logging.WARNING, logger="m365lake.lake.lake"):
        Lake.open(root, create=False)

    assert f"chmod 700 {root}" in caplog.text

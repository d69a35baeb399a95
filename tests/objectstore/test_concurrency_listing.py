"""The manifest head on moto's S3 server when a listing lags behind recent commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from m365lake.lake import Lake
from m365lake.lake.commits import COMMIT_DIR, ManifestLog
from m365lake.lake.object_store import ObjectStorage, open_object_storage
from tests.objectstore.servers import S3Server

pytestmark = pytest.mark.objectstore


class LaggingListing(ObjectStorage):
    """An ObjectStorage whose listings of ``commits/`` leave out the newest ``hidden`` names."""

    hidden = 0

    def list_names(self, directory: str) -> list[str]:
        names = sorted(super().list_names(directory))
        if directory == COMMIT_DIR and self.hidden:
            return names[: -self.hidden]
        return names


@pytest.fixture
def storage(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> LaggingListing:
    opened = open_object_storage(f"s3://{s3_bucket}/lake", **s3_server.storage_options())
    return LaggingListing(opened.fs, opened.root, tmp_path / "cache")


def commit(lake: Lake, run_id: str) -> int:
    with lake.begin(run_id=run_id, kind="mail", container=None) as transaction:
        transaction.set_state(f"token-{run_id}", run_id)
        seq: int = transaction.commit()["seq"]
    return seq


def test_head_found_past_lagging_listing(storage: LaggingListing) -> None:
    lake = Lake(storage)
    for index in range(4):
        commit(lake, f"run-{index}")
    storage.hidden = 2

    log = ManifestLog(storage)

    assert log.sequence_numbers() == [1, 2, 3, 4]
    assert log.head().seq == 4
    assert lake.state("token-run-3") == "run-3"
    assert commit(lake, "run-4") == 5


def test_head_found_with_empty_listing(storage: LaggingListing) -> None:
    lake = Lake(storage)
    commit(lake, "run-0")
    storage.hidden = 1

    assert ManifestLog(storage).head().seq == 1

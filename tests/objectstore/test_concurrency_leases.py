"""Lease and purge-lock races on moto's S3 server and Azurite: one writer wins each."""

from __future__ import annotations

import pytest

from m365lake.lake.object_store import ObjectStorage
from tests.unit.test_lake_leases_tagged import (
    TagGate,
    check_purge_takeover_race,
    check_takeover_race,
)

pytestmark = pytest.mark.objectstore


class GatedObjectStorage(ObjectStorage):
    """An ObjectStorage whose first two ``read_tagged`` calls wait for each other."""

    gate: TagGate

    def read_tagged(self, relative: str) -> tuple[bytes, str]:
        result = super().read_tagged(relative)
        self.gate.wait()
        return result


@pytest.fixture
def storage(
    opened_store: ObjectStorage, tmp_path_factory: pytest.TempPathFactory
) -> GatedObjectStorage:
    opened = opened_store
    gated = GatedObjectStorage(opened.fs, opened.root, tmp_path_factory.mktemp("cache"))
    gated.gate = TagGate()
    return gated


def test_expired_lease_takeover_race(storage: GatedObjectStorage) -> None:
    check_takeover_race(storage)


def test_stale_purge_lock_takeover_race(storage: GatedObjectStorage) -> None:
    check_purge_takeover_race(storage)

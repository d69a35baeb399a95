"""A drive's file count from Graph against the archive's, with and without quota.fileCount."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from m365lake.backup_files import backup_files
from m365lake.drive_counts import DELTA_BASIS, QUOTA_BASIS, DriveFileCount, compare_drive_files
from m365lake.emulator import EmulatorServer, Tenant, routes_drives
from m365lake.graph import GraphClient
from m365lake.lake import Lake


def compare(emulator: EmulatorServer, lake: Lake, drive_id: str) -> DriveFileCount:
    async def run() -> DriveFileCount:
        async with GraphClient(emulator.settings()) as graph:
            return await compare_drive_files(graph, lake, drive_id)

    return asyncio.run(run())


@pytest.fixture
def drive_id(tenant: Tenant) -> str:
    upn = tenant.users()[0].user.user_principal_name
    tenant.add_package("onedrive", upn, "Documents", ("Notebook",))
    return tenant.drive_id_for("onedrive", upn)


def test_counts_match_after_backup(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, drive_id: str
) -> None:
    asyncio.run(backup_files(emulator.settings(), lake, drives=[drive_id]))

    count = compare(emulator, lake, drive_id)

    assert count.basis == QUOTA_BASIS
    assert count.source == len(tenant.live_files(drive_id))
    assert count.matches


def test_delta_counts_when_quota_lacks_file_count(
    tenant: Tenant,
    emulator: EmulatorServer,
    lake: Lake,
    drive_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served = routes_drives.drive_json

    def without_file_count(*args: Any) -> dict[str, Any]:
        body = served(*args)
        del body["quota"]["fileCount"]
        return body

    monkeypatch.setattr(routes_drives, "drive_json", without_file_count)
    asyncio.run(backup_files(emulator.settings(), lake, drives=[drive_id]))
    upn = tenant.users()[0].user.user_principal_name
    tenant.add_file("onedrive", upn, "Documents", ("after the backup.txt",), b"new")

    count = compare(emulator, lake, drive_id)

    assert count.basis == DELTA_BASIS
    assert count.source == len(tenant.live_files(drive_id))
    assert count.archived == count.source - 1
    assert not count.matches

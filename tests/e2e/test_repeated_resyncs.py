"""A delta token that dies again during the enumeration that replaced it.

Graph returns 410 for a stale nextLink mid-round as well as for a stored deltaLink, so the
full enumeration started after one 410 can meet another. The backup starts over a few
times before it reports the container as failed.
"""

from __future__ import annotations

import asyncio

from m365lake.backup_files import backup_files
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.lake import Lake
from m365lake.sources.drives import MAX_RESYNCS as DRIVE_MAX_RESYNCS
from m365lake.sources.mail import MAX_RESYNCS as MAIL_MAX_RESYNCS
from tests.e2e.test_mail_backup import archive_state, tenant_state
from tests.faults.lake_vs_tenant import Accounting, compare_files


def test_mail_resync_interrupted_again(
    tenant: Tenant, emulator: EmulatorServer, backup, sql
) -> None:
    backup()
    upn = tenant.users()[0].user.user_principal_name
    tenant.add_message(upn, ("Inbox",), b"Subject: after the first run\r\n\r\nnew\r\n")
    emulator.inject(
        path_pattern=r"/messages/delta",
        status=410,
        times=MAIL_MAX_RESYNCS,
        code="SyncStateNotFound",
    )

    summary = backup()

    assert summary.failed == {}
    assert summary.total("resyncs") == MAIL_MAX_RESYNCS
    assert archive_state(sql) == tenant_state(tenant)


def test_mail_resyncs_are_bounded(tenant: Tenant, emulator: EmulatorServer, backup) -> None:
    backup()
    upn = tenant.users()[0].user.user_principal_name
    emulator.inject(
        path_pattern=rf"/users/{tenant.user_id(upn)}/mailFolders/delta",
        status=410,
        times=MAIL_MAX_RESYNCS + 1,
        code="SyncStateNotFound",
    )

    summary = backup(users=[upn])

    assert "SyncStateExpiredError" in summary.failed[upn]


def test_drive_resync_interrupted_again(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    asyncio.run(backup_files(emulator.settings(), lake))
    drive = tenant.onedrive_of(tenant.users()[0].id)
    assert drive is not None
    tenant.add_file("onedrive", drive.owner, "Documents", ("late.txt",), b"late")
    emulator.inject(
        path_pattern=rf"/drives/{drive.id}/root/delta",
        status=410,
        times=DRIVE_MAX_RESYNCS,
        code="resyncChangesApplyDifferences",
    )

    summary = asyncio.run(backup_files(emulator.settings(), lake, drives=[drive.id]))

    assert summary.failed == {}
    [result] = summary.results
    assert result.resyncs == DRIVE_MAX_RESYNCS
    comparison = compare_files(lake, tenant, Accounting(), strict=True)
    assert comparison.problems == []


def test_drive_resyncs_are_bounded(tenant: Tenant, emulator: EmulatorServer, lake: Lake) -> None:
    drive = tenant.onedrive_of(tenant.users()[0].id)
    assert drive is not None
    emulator.inject(
        path_pattern=rf"/drives/{drive.id}/root/delta",
        status=410,
        times=DRIVE_MAX_RESYNCS + 1,
        code="resyncChangesApplyDifferences",
    )

    summary = asyncio.run(backup_files(emulator.settings(), lake, drives=[drive.id]))

    assert "SyncStateExpiredError" in summary.failed[drive.id]

"""Retention and purge over a lake that the real backups filled from the emulator."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from m365lake.backup import backup_mail
from m365lake.backup_files import backup_files
from m365lake.catalog import run_sql
from m365lake.discovery import add_custodians, create_case, place_hold, verify_archive
from m365lake.discovery.records import utc_now
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.seed import SeedSite
from m365lake.lake import Lake
from m365lake.lake.blob_users import BlobsInUseError, exclusive_blobs, live_blob_users
from m365lake.retention import add_policy, purge

LARGE = bytes(range(256)) * 8192
"""2 MiB: above the default inline threshold, so archived as a blob."""


def back_up(emulator: EmulatorServer, lake: Lake) -> None:
    mail = asyncio.run(backup_mail(emulator.settings(), lake))
    files = asyncio.run(backup_files(emulator.settings(), lake))
    assert not mail.failed
    assert not files.failed


def count(lake: Lake, sql: str) -> int:
    return int(run_sql(lake, sql)[1][0][0])


def test_purge_keeps_held_mailbox_and_verifies(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    tenant.add_site(SeedSite("legal", "Legal"))
    evidence = tenant.add_file("site", "legal", "Documents", ("evidence.bin",), LARGE)
    back_up(emulator, lake)
    tenant.update_file_content(evidence, LARGE[::-1])
    back_up(emulator, lake)
    held = tenant.users()[0].user.user_principal_name
    held_id = run_sql(
        lake, f"SELECT mailbox_id FROM mailboxes WHERE user_principal_name = '{held}'"
    )[1][0][0]
    held_messages = count(
        lake, f"SELECT count(*) FROM messages_rows WHERE mailbox_id = '{held_id}'"
    )
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", held)], actor="carol")
    place_hold(lake, "C", actor="carol")
    add_policy(lake, actor="erin", name="all mail", workload="mail", action="delete", days=0)
    add_policy(lake, actor="erin", name="all files", workload="files", action="delete", days=0)
    blobs_before = set(lake.blobs.iter_hashes())

    result = purge(lake, actor="erin", apply=True, now=utc_now() + timedelta(days=1))

    assert result.counts()["versions"] > 0
    assert count(lake, "SELECT count(*) FROM messages_rows") == held_messages
    assert count(lake, "SELECT count(*) FROM file_versions") == 0
    assert result.blobs_deleted == 2
    assert set(lake.blobs.iter_hashes()) < blobs_before
    assert verify_archive(lake)["audit_events"] == 7


def test_backup_after_purge_is_incremental(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    back_up(emulator, lake)
    add_policy(lake, actor="erin", name="all mail", workload="mail", action="delete", days=0)
    purge(lake, actor="erin", apply=True, now=utc_now() + timedelta(days=1))
    upn = tenant.users()[0].user.user_principal_name
    new_message = tenant.add_message(
        upn, ("Inbox",), b"From: a@contoso.example\r\nSubject: after purge\r\n\r\nbody\r\n"
    )

    back_up(emulator, lake)

    subjects = run_sql(lake, "SELECT subject FROM messages")[1]
    assert subjects == [("after purge",)]
    assert new_message
    assert verify_archive(lake)["files"] > 0


def test_backups_register_as_blob_users(emulator: EmulatorServer, lake: Lake) -> None:
    seen: list[list[str]] = []

    def progress(_result: object) -> None:
        seen.append([str(record["owner"]) for record in live_blob_users(lake.storage)])

    asyncio.run(backup_mail(emulator.settings(), lake, progress=progress))

    assert seen
    assert all(len(owners) == 1 for owners in seen)
    assert all(owners[0].startswith("mail backup ") for owners in seen)
    assert live_blob_users(lake.storage) == []


def test_backup_waits_out_purge_lock(emulator: EmulatorServer, lake: Lake) -> None:
    with (
        exclusive_blobs(lake.storage, owner="purge in progress"),
        pytest.raises(BlobsInUseError, match="purge in progress"),
    ):
        asyncio.run(backup_files(emulator.settings(), lake, blob_wait_seconds=0))

    assert lake.committed_files("drive_items") == []

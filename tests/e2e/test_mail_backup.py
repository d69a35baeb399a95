"""Mail backup end to end: msal + httpx against the emulator over HTTPS, into a real lake."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import pytest

from m365lake.backup import backup_mail
from m365lake.catalog import refresh_catalog
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.mapping import mime_attachments
from m365lake.emulator.seed import SeedUser
from m365lake.lake import Lake


def _upns(tenant: Tenant) -> list[str]:
    return sorted(info.user.user_principal_name for info in tenant.users() if info.has_mailbox)


def tenant_state(tenant: Tenant) -> dict[tuple[str, str], tuple[str, str, bool]]:
    """(mailbox id, message id) → (folder path, MIME sha256, is_read) of every live message."""
    state = {}
    for upn in _upns(tenant):
        mailbox_id = tenant.user_id(upn)
        for message_id, live in tenant.live_messages(upn).items():
            state[(mailbox_id, message_id)] = (
                "/".join(live.folder_path),
                hashlib.sha256(live.mime).hexdigest(),
                live.is_read,
            )
    return state


def archive_state(sql: Any) -> dict[tuple[str, str], tuple[str, str, bool]]:
    rows = sql("SELECT mailbox_id, message_id, folder_path, mime_sha256, is_read FROM messages")
    return {(row[0], row[1]): (row[2], row[3], row[4]) for row in rows}


def version_count(sql: Any) -> int:
    return int(sql("SELECT count(*) FROM message_versions")[0][0])


def test_first_run_archives_every_message(tenant, emulator, backup, sql, lake: Lake):
    summary = backup()

    expected = tenant_state(tenant)
    assert len(summary.results) == len(_upns(tenant))
    assert summary.total("failures") == 0
    assert archive_state(sql) == expected
    served = {
        (tenant.user_id(upn), message_id): live.mime
        for upn in _upns(tenant)
        for message_id, live in tenant.live_messages(upn).items()
    }
    rows = sql("SELECT mailbox_id, message_id, mime_sha256, mime_inline FROM messages")
    archived = {(row[0], row[1]): lake.read_content(row[2], row[3]) for row in rows}
    assert len(archived) == len(rows)
    assert archived.keys() == served.keys()
    for key, mime in served.items():
        assert archived[key] == mime, f"MIME of message {key} differs from what Graph served"


def test_attachments_listed_with_their_hashes(tenant, emulator, backup, sql):
    backup()

    expected = set()
    for upn in _upns(tenant):
        for message_id, live in tenant.live_messages(upn).items():
            for attachment in mime_attachments(live.mime):
                if attachment.kind == "file":
                    expected.add((message_id, hashlib.sha256(attachment.content).hexdigest()))
    archived = set(sql("SELECT message_id, content_sha256 FROM attachments WHERE kind = 'file'"))
    assert expected, "the generated tenant should contain attachments"
    assert expected <= archived


def test_second_run_adds_no_rows_and_few_requests(tenant, emulator: EmulatorServer, backup, sql):
    backup()
    versions = version_count(sql)
    folders = int(sql("SELECT count(*) FROM folders")[0][0])
    emulator.clear_requests()

    summary = backup()

    assert summary.total("messages_new") == 0
    assert summary.total("messages_updated") == 0
    assert version_count(sql) == versions
    graph_requests = [record for record in emulator.requests if "/v1.0/" in record.path]
    per_mailbox = [record for record in graph_requests if record.path.count("/") > 3]
    mailboxes = len(_upns(tenant))
    # One message-delta request per folder plus one folder-delta request per mailbox.
    assert len(per_mailbox) <= folders + mailboxes
    assert not [record for record in graph_requests if record.path.endswith("/$value")]


def test_changes_since_last_run_recorded(tenant: Tenant, emulator, backup, sql):
    backup()
    upn = _upns(tenant)[0]
    live = tenant.live_messages(upn)
    ids = sorted(live)
    versions = version_count(sql)
    new_mime = (
        b"From: Dana <dana@contoso.example>\r\nTo: " + upn.encode() + b"\r\n"
        b"Subject: added after the first run\r\nMessage-ID: <added-1@contoso.example>\r\n"
        b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\nhello\r\n"
    )
    tenant.add_message(upn, ("Inbox",), new_mime)
    tenant.update_message(upn, ids[0], is_read=not live[ids[0]].is_read)
    tenant.move_message(upn, ids[1], ("Deleted Items",))
    tenant.delete_message(upn, ids[2])

    summary = backup()

    assert summary.total("messages_new") == 1
    assert summary.total("messages_updated") == 2
    assert summary.total("messages_deleted") == 1
    assert version_count(sql) == versions + 3
    assert archive_state(sql) == tenant_state(tenant)
    deleted = sql(
        f"SELECT count(*) FROM message_versions WHERE message_id = '{ids[2]}' "
        "AND deleted_at IS NOT NULL"
    )
    assert deleted[0][0] == 1


def test_deleted_folder_marks_its_messages_deleted(tenant: Tenant, emulator, backup, sql):
    upn = _upns(tenant)[0]
    folder_id = tenant.add_folder(upn, ("Projects", "Old"))
    tenant.add_message(upn, folder_id, b"Subject: in a folder that goes\r\n\r\nbody\r\n")
    backup()
    assert sql("SELECT count(*) FROM messages WHERE folder_path = 'Projects/Old'")[0][0] == 1

    tenant.delete_folder(upn, folder_id)
    backup()

    assert archive_state(sql) == tenant_state(tenant)
    assert sql("SELECT count(*) FROM folders WHERE folder_path = 'Projects/Old'")[0][0] == 0


def test_throttling_and_expired_sync_state_survived(
    tenant: Tenant, emulator: EmulatorServer, backup, sql, caplog: pytest.LogCaptureFixture
):
    backup()
    upn = _upns(tenant)[1]
    tenant.add_message(upn, ("Inbox",), b"Subject: after expiry\r\n\r\nnew\r\n")
    tenant.expire_sync_state()
    emulator.inject(path_pattern=r"/\$value$", status=429, times=3, retry_after="0.2")
    emulator.inject(path_pattern=r"/messages/delta", status=429, times=2, retry_after="1")
    caplog.set_level(logging.INFO, logger="m365lake")

    summary = backup()

    assert summary.total("failures") == 0
    assert summary.total("resyncs") >= 1
    assert archive_state(sql) == tenant_state(tenant)
    throttled = [r for r in caplog.records if r.levelno == logging.INFO and "429" in r.getMessage()]
    assert throttled, "throttling must be logged at INFO"


def test_repeated_delta_items_do_not_duplicate_rows(tenant: Tenant, emulator, backup, sql):
    backup()
    tenant.expire_sync_state()

    backup()

    duplicates = sql(
        "SELECT message_id, count(*) FROM message_versions GROUP BY 1 HAVING count(*) > 1"
    )
    assert duplicates == []
    assert archive_state(sql) == tenant_state(tenant)


def test_user_without_mailbox_skipped_not_failed(tenant: Tenant, emulator, backup):
    tenant.add_user(
        SeedUser(
            user_principal_name="shared.scanner@contoso.example",
            display_name="Scanner",
            mail="shared.scanner@contoso.example",
            has_mailbox=False,
        )
    )

    summary = backup()

    assert "shared.scanner@contoso.example" in summary.skipped
    assert summary.failed == {}
    assert len(summary.results) == len(_upns(tenant))


def test_moved_graph_endpoint_resyncs_without_duplicates(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, emulator_state, sql
):
    asyncio.run(backup_mail(emulator.settings(), lake))
    emulator.stop()

    with EmulatorServer(tenant, emulator_state) as moved:
        assert moved.port != emulator.port
        summary = asyncio.run(backup_mail(moved.settings(), lake))
    refresh_catalog(lake)

    assert summary.failed == {}
    assert summary.total("messages_new") == 0
    assert archive_state(sql) == tenant_state(tenant)


def test_checkpoints_commit_between_folders(tenant: Tenant, emulator, lake: Lake, sql):
    summary = asyncio.run(backup_mail(emulator.settings(), lake, checkpoint_messages=5))
    refresh_catalog(lake)

    assert all(result.commits > 1 for result in summary.results)
    assert archive_state(sql) == tenant_state(tenant)
    state = lake.state_items("mail/")
    assert state
    assert [key for key in state if key.endswith("/tombstones")] == []


def test_move_across_checkpoint_is_not_a_deletion(tenant: Tenant, emulator, lake: Lake, sql):
    asyncio.run(backup_mail(emulator.settings(), lake))
    upn = _upns(tenant)[0]
    live = tenant.live_messages(upn)
    inbox = sorted(i for i, message in live.items() if message.folder_path == ("Inbox",))
    for message_id in inbox[:3]:
        tenant.move_message(upn, message_id, ("Archive",))

    asyncio.run(backup_mail(emulator.settings(), lake, users=[upn], checkpoint_messages=1))
    refresh_catalog(lake)

    assert archive_state(sql) == tenant_state(tenant)
    moved = "', '".join(inbox[:3])
    deleted = sql(
        f"SELECT count(*) FROM message_versions WHERE message_id IN ('{moved}') "
        "AND deleted_at IS NOT NULL"
    )
    assert deleted[0][0] == 0

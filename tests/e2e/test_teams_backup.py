"""Teams channel conversation backup against the emulator over HTTPS on loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from m365lake.backup_files import backup_files
from m365lake.backup_teams import TeamsBackupSummary, backup_teams, lease_name
from m365lake.catalog import refresh_catalog, run_sql
from m365lake.discovery.production.teams_thread import render_thread_html
from m365lake.emulator import EmulatorOptions, EmulatorServer, Tenant
from m365lake.emulator.generator_teams import GeneratedThread, generate_teams
from m365lake.emulator.samplefiles import png_image
from m365lake.lake import Lake
from tests.e2e.test_cli import m365lake


@pytest.fixture
def thread(tenant: Tenant) -> GeneratedThread:
    generated = generate_teams(tenant)
    assert generated is not None
    return generated


def run_teams(emulator: EmulatorServer, lake: Lake) -> TeamsBackupSummary:
    return asyncio.run(backup_teams(emulator.settings(), lake))


def rows(lake: Lake, table: str, where: str = "true") -> list[dict[str, Any]]:
    files = [str(path) for path in lake.committed_files(table)]
    if not files:
        return []
    with duckdb.connect() as db:
        cursor = db.execute(
            f"SELECT * FROM read_parquet($files, union_by_name = true, hive_partitioning = false) "
            f"WHERE {where} ORDER BY captured_at",
            {"files": files},
        )
        names = [column[0] for column in cursor.description or []]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def archived_json(lake: Lake, row: dict[str, Any]) -> dict[str, Any]:
    data = lake.read_content(row["json_sha256"], row["json_inline"])
    document: dict[str, Any] = json.loads(data)
    return document


def test_thread_versions_archived(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    asyncio.run(backup_files(emulator.settings(), lake))
    first = run_teams(emulator, lake)
    assert first.failed == {}
    reply = tenant.post_channel_message(
        thread.team_id,
        thread.channel_id,
        tenant.users()[1].user.user_principal_name,
        "<p>Draft numbers attached later.</p>",
        reply_to=thread.root_id,
    )
    second = run_teams(emulator, lake)
    assert second.failed == {}

    tenant.edit_channel_message(
        thread.team_id, thread.channel_id, thread.edited_id, "<p>Launch on the 28th.</p>"
    )
    tenant.soft_delete_channel_message(thread.team_id, thread.channel_id, reply)
    third = run_teams(emulator, lake)
    assert third.failed == {}
    assert third.total("messages_updated") == 2
    assert third.total("messages_new") == 0

    edited = rows(lake, "channel_messages", f"message_id = '{thread.edited_id}'")
    assert len(edited) == 2
    assert edited[0]["edited_at"] is not None
    assert edited[1]["edited_at"] > edited[0]["edited_at"]
    assert "21st" in archived_json(lake, edited[0])["body"]["content"]
    assert "28th" in archived_json(lake, edited[1])["body"]["content"]

    deleted = rows(lake, "channel_messages", f"message_id = '{reply}'")
    assert [row["change"] for row in deleted] == ["created", "updated"]
    assert deleted[0]["soft_deleted_at"] is None
    assert deleted[1]["soft_deleted_at"] is not None
    assert "Draft numbers" in archived_json(lake, deleted[0])["body"]["content"]
    assert deleted[1]["reply_to_id"] == thread.root_id

    already_deleted = rows(lake, "channel_messages", f"message_id = '{thread.deleted_reply_id}'")
    assert len(already_deleted) == 1
    assert already_deleted[0]["soft_deleted_at"] is not None

    # The thread older than delta's eight months came from the full listing.
    assert rows(lake, "channel_messages", f"message_id = '{thread.old_root_id}'")

    latest: dict[str, dict[str, Any]] = {}
    for row in rows(lake, "channel_messages", f"channel_id = '{thread.channel_id}'"):
        if row["message_id"] == thread.root_id or row["reply_to_id"] == thread.root_id:
            latest[row["message_id"]] = archived_json(lake, row)
    page = render_thread_html(list(latest.values())).decode()
    ordered = sorted(latest.values(), key=lambda item: item["createdDateTime"])
    positions = [page.index(f'id="message-{item["id"]}"') for item in ordered]
    assert positions == sorted(positions)
    assert len(positions) == 5
    assert page.count("This message was deleted.") == 2
    assert "Launch on the 28th." in page


def test_parts_hosted_content_and_file_link(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    asyncio.run(backup_files(emulator.settings(), lake))
    summary = run_teams(emulator, lake)
    assert summary.failed == {}

    links = rows(lake, "channel_message_parts", "kind = 'reference'")
    assert len(links) == 1
    assert links[0]["message_id"] == thread.root_id
    assert (links[0]["drive_id"], links[0]["item_id"]) == (
        thread.file_drive_id,
        thread.file_item_id,
    )
    assert links[0]["name"] == "Launch plan.docx"

    hosted = rows(lake, "channel_message_parts", "kind = 'hostedContent'")
    assert len(hosted) == 1
    assert hosted[0]["content_type"] == "image/png"
    assert lake.blobs.read(hosted[0]["content_sha256"]) == png_image(32, 24, shade=90)

    root = rows(lake, "channel_messages", f"message_id = '{thread.root_id}'")
    mentioned = [info.user.display_name for info in tenant.users() if info.has_mailbox][1]
    assert root[0]["mentions"] == [mentioned]
    assert root[0]["reaction_count"] == 1
    teams = rows(lake, "teams")
    assert sorted(row["display_name"] for row in teams) == ["Legal Review", "Project Falcon"]
    channels = rows(lake, "channels", f"team_id = '{thread.team_id}'")
    assert sorted(row["display_name"] for row in channels) == ["Design", "General"]


def test_file_link_unresolved_without_drive_archive(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    run_teams(emulator, lake)
    links = rows(lake, "channel_message_parts", "kind = 'reference'")
    assert links[0]["drive_id"] is None
    assert links[0]["content_url"].endswith("Launch%20plan.docx")


def test_second_run_writes_no_message_rows(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    first = run_teams(emulator, lake)
    assert first.total("messages_new") > 0
    before = len(rows(lake, "channel_messages"))
    second = run_teams(emulator, lake)
    assert second.failed == {}
    assert second.total("messages_new") == 0
    assert second.total("messages_updated") == 0
    assert len(rows(lake, "channel_messages")) == before
    assert rows(lake, "channel_message_parts", f"run_id = '{second.results[0].run_id}'") == []


def test_sender_address_from_directory(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    summary = run_teams(emulator, lake)
    assert summary.failed == {}

    messages = rows(lake, "channel_messages")
    directory = {info.id: info.user for info in tenant.users()}
    senders = {row["from_user_id"] for row in messages}
    assert senders and senders <= set(directory)
    for row in messages:
        user = directory[row["from_user_id"]]
        assert row["from_address"] == (user.mail or user.user_principal_name)
    # One directory request per sender for the whole run, whatever their message count.
    lookups = [
        record.path
        for record in emulator.requests
        if record.path.startswith("/v1.0/users/") and record.path.count("/") == 3
    ]
    assert sorted(lookups) == sorted(f"/v1.0/users/{sender}" for sender in senders)


def test_protected_api_off_fails_clearly(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    tenant.app.protected_apis_approved = False
    summary = run_teams(emulator, lake)
    assert summary.results == []
    assert sorted(summary.failed) == sorted(team.id for team in tenant.teams())
    for message in summary.failed.values():
        assert "protected API" in message
        assert "nothing of this team was committed" in message
    assert rows(lake, "channel_messages") == []
    assert rows(lake, "runs", "kind = 'teams'") == []
    assert not any(key.startswith("teams/") for key in lake.state_items("teams/"))

    tenant.app.protected_apis_approved = True
    recovered = run_teams(emulator, lake)
    assert recovered.failed == {}
    assert recovered.total("messages_new") > 0


def test_new_post_with_image_archived(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    summary = run_teams(emulator, lake)
    assert summary.failed == {}
    hosted_image = png_image(8, 8)
    design = tenant.channel_id(thread.team_id, "Design")
    new_root = tenant.post_channel_message(
        thread.team_id,
        design,
        tenant.users()[0].user.user_principal_name,
        "<p>v2</p>",
        hosted_images=[(hosted_image, "image/png")],
    )
    again = run_teams(emulator, lake)
    assert again.total("messages_new") == 1
    hosted = rows(lake, "channel_message_parts", f"message_id = '{new_root}'")
    assert lake.blobs.read(hosted[0]["content_sha256"]) == hosted_image


def test_backup_honours_teams_throttling(
    tenant: Tenant, emulator_state: Path, lake: Lake, thread: GeneratedThread
) -> None:
    # Below Graph's real limit of 4 per second per app and channel, because a channel of
    # the generated tenant needs only a few requests.
    options = EmulatorOptions(teams_channel_requests_per_second=1)
    with EmulatorServer(tenant, emulator_state, options=options) as server:
        summary = asyncio.run(backup_teams(server.settings(), lake, concurrency=1))
        statuses = [record.status for record in server.requests]

    assert summary.failed == {}
    assert 429 in statuses
    assert summary.graph is not None
    assert summary.graph.throttled > 0
    root = rows(lake, "channel_messages", f"message_id = '{thread.root_id}'")
    assert len(root) == 1


def test_expired_delta_lists_again_without_duplicates(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    first = run_teams(emulator, lake)
    assert first.failed == {}
    before = len(rows(lake, "channel_messages"))
    tenant.expire_teams_delta()
    tenant.edit_channel_message(
        thread.team_id, thread.channel_id, thread.root_id, "<p>Kick-off moved to Tuesday.</p>"
    )

    second = run_teams(emulator, lake)

    assert second.failed == {}
    channels = sum(result.channels for result in second.results)
    assert second.total("resyncs") == channels
    assert second.total("full_listings") == channels
    assert second.total("messages_new") == 0
    assert second.total("messages_updated") == 1
    assert second.total("messages_deleted") == 0
    assert len(rows(lake, "channel_messages")) == before + 1
    third = run_teams(emulator, lake)
    assert third.total("resyncs") == 0
    assert third.total("messages_updated") == 0


def test_hosted_content_failure_retried(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    emulator.app.state.faults.inject(
        path_pattern=r"/hostedContents/[^/]+/\$value$", status=400, code="BadRequest"
    )

    summary = run_teams(emulator, lake)

    assert summary.failed == {}
    assert summary.total("failures") == 1
    assert summary.total("pending_retries") == 1
    failures = rows(lake, "failures", "workload = 'teams'")
    assert len(failures) == 1
    assert failures[0]["stage"] == "hostedContent"
    assert failures[0]["outcome"] == "failed"
    assert failures[0]["container_id"] == thread.team_id
    design = tenant.channel_id(thread.team_id, "Design")
    messages = rows(lake, "channel_messages", f"channel_id = '{design}'")
    assert failures[0]["item_id"] in {row["message_id"] for row in messages}
    assert rows(lake, "channel_message_parts", "kind = 'hostedContent'") == []

    again = run_teams(emulator, lake)

    assert again.total("failures") == 0
    assert again.total("pending_retries") == 0
    assert again.total("messages_new") == 0
    hosted = rows(lake, "channel_message_parts", "kind = 'hostedContent'")
    assert [row["message_id"] for row in hosted] == [failures[0]["item_id"]]
    assert lake.blobs.read(hosted[0]["content_sha256"]) == png_image(32, 24, shade=90)
    assert run_teams(emulator, lake).total("parts") == 0


def test_hosted_content_gone_skipped(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    emulator.app.state.faults.inject(
        path_pattern=r"/hostedContents/[^/]+/\$value$", status=404, code="NotFound"
    )

    summary = run_teams(emulator, lake)

    assert summary.total("pending_retries") == 0
    failures = rows(lake, "failures", "workload = 'teams'")
    assert [(row["outcome"], row["reason"]) for row in failures] == [("skipped", "itemNotFound")]


def test_backup_command_teams_workload(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    env = {**emulator.environment(), "M365LAKE_LAKE": str(lake.root)}
    result = m365lake("backup", "--workload", "teams", env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "2 teams archived" in result.stdout

    tenant.app.protected_apis_approved = False
    refused = m365lake("backup", "--workload", "teams", "--team", thread.team_id, env=env)
    assert refused.returncode == 1
    assert f"failed team {thread.team_id}" in refused.stderr
    assert "protected API" in refused.stderr


def test_backup_command_selects_team_by_name(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    env = {**emulator.environment(), "M365LAKE_LAKE": str(lake.root)}
    (name,) = [team.display_name for team in tenant.teams() if team.id == thread.team_id]

    result = m365lake("backup", "--workload", "teams", "--team", name.upper(), env=env)

    assert result.returncode == 0, result.stderr + result.stdout
    assert "1 teams archived" in result.stdout
    archived = rows(lake, "teams")
    assert [row["team_id"] for row in archived] == [thread.team_id]


def test_team_leased_elsewhere_skipped(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    lease = lake.acquire_lease(lease_name(thread.team_id), owner="another run")
    try:
        summary = run_teams(emulator, lake)
    finally:
        lease.release()

    assert list(summary.skipped) == [thread.team_id]
    assert "already being archived" in summary.skipped[thread.team_id]
    assert summary.failed == {}
    assert rows(lake, "channel_messages", f"team_id = '{thread.team_id}'") == []
    assert len(summary.results) == 1


def test_edits_query_counts_versions(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    run_teams(emulator, lake)
    tenant.edit_channel_message(
        thread.team_id, thread.channel_id, thread.edited_id, "<p>Launch on the 28th.</p>"
    )
    run_teams(emulator, lake)
    refresh_catalog(lake)
    query = Path(__file__).resolve().parents[2] / "queries" / "teams_edits_and_deletions.sql"

    columns, found = run_sql(lake, query.read_text())

    listed = {row[columns.index("message_id")]: row for row in found}
    assert set(listed) == {thread.edited_id, thread.deleted_reply_id}
    assert listed[thread.edited_id][columns.index("versions")] == 2
    assert listed[thread.deleted_reply_id][columns.index("versions")] == 1
    assert listed[thread.edited_id][columns.index("team")] == "Project Falcon"
    assert listed[thread.edited_id][columns.index("channel")] == "General"

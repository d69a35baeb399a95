"""Holds keep archived calendars, contacts and Teams conversations through a purge.

The tenant emulator serves every workload; each is backed up over HTTPS as in
production, then a mailbox and a team are held while delete policies expire everything.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from m365lake.backup import backup_mail
from m365lake.backup_calendar import backup_calendars
from m365lake.backup_contacts import backup_contacts
from m365lake.backup_files import backup_files
from m365lake.backup_teams import backup_teams
from m365lake.catalog import run_sql
from m365lake.discovery import add_custodians, create_case, place_hold, verify_archive
from m365lake.discovery.records import utc_now
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator_teams import generate_teams
from m365lake.lake import Lake
from m365lake.retention import add_policy, held_versions_in_plan, plan_purge, purge
from m365lake.retention.plan import versions_by_item


def versions_per_container(lake: Lake) -> Counter[tuple[str, str]]:
    """Count archived versions per (workload, container)."""
    counts: Counter[tuple[str, str]] = Counter()
    for (workload, container, _item), versions in versions_by_item(lake).items():
        counts[(workload, container)] += len(versions)
    return counts


def test_mailbox_and_team_holds_survive_purge(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    thread = generate_teams(tenant)
    assert thread is not None
    settings = emulator.settings()
    assert not asyncio.run(backup_mail(settings, lake)).failed
    assert not asyncio.run(backup_calendars(settings, lake)).failed
    assert not asyncio.run(backup_contacts(settings, lake)).failed
    asyncio.run(backup_files(settings, lake))
    assert not asyncio.run(backup_teams(settings, lake)).failed

    upns = sorted(info.user.user_principal_name for info in tenant.users())
    held_upn, unheld_upn = upns[0], upns[1]
    held_box, unheld_box = (
        run_sql(lake, f"SELECT mailbox_id FROM mailboxes WHERE user_principal_name = '{upn}'")[1][
            0
        ][0]
        for upn in (held_upn, unheld_upn)
    )
    channels = {
        row[0]: row[1]
        for row in run_sql(lake, "SELECT DISTINCT channel_id, team_id FROM channel_messages_rows")[
            1
        ]
    }
    held_channels = {channel for channel, team in channels.items() if team == thread.team_id}
    other_channels = set(channels) - held_channels
    hosted = {
        row[0]: row[1]
        for row in run_sql(
            lake,
            "SELECT content_sha256, channel_id FROM channel_message_parts_rows "
            "WHERE content_sha256 IS NOT NULL",
        )[1]
    }
    before = versions_per_container(lake)
    assert before[("calendar", held_box)] > 0
    assert before[("contacts", held_box)] > 0
    assert before[("calendar", unheld_box)] > 0
    assert held_channels and other_channels
    assert any(channel in held_channels for channel in hosted.values())

    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", held_upn), ("team", thread.team_id)], actor="carol")
    place_hold(lake, "C", actor="carol")
    for workload in ("calendar", "contacts", "teams", "files"):
        add_policy(lake, actor="erin", name=workload, workload=workload, action="delete", days=0)
    # Far enough ahead that every generated meeting has ended.
    later = utc_now() + timedelta(days=3650)

    result = purge(lake, actor="erin", apply=True, now=later)

    after = versions_per_container(lake)
    assert result.counts()["versions"] > 0
    assert after[("calendar", held_box)] == before[("calendar", held_box)]
    assert after[("contacts", held_box)] == before[("contacts", held_box)]
    for channel in held_channels:
        assert after[("teams", channel)] == before[("teams", channel)]
    assert after[("contacts", unheld_box)] == 0
    assert after[("calendar", unheld_box)] < before[("calendar", unheld_box)]
    for channel in other_channels:
        assert after[("teams", channel)] == 0
    for digest, channel in hosted.items():
        assert lake.blobs.exists(digest) == (channel in held_channels), digest
    assert after[("mail", held_box)] == before[("mail", held_box)]
    # The file a held message links to is held with it; other files go.
    remaining = versions_by_item(lake)
    assert ("files", thread.file_drive_id, thread.file_item_id) in remaining
    files_before = sum(count for key, count in before.items() if key[0] == "files")
    files_after = sum(count for key, count in after.items() if key[0] == "files")
    assert files_after < files_before
    assert held_versions_in_plan(lake, plan_purge(lake, now=later)) == {}
    verify_archive(lake, blob_sample=0)

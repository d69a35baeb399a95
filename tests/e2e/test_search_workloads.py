"""Search and productions of calendars, contacts and Teams archived from the emulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from m365lake.backup import backup_mail
from m365lake.backup_calendar import backup_calendars
from m365lake.backup_contacts import backup_contacts
from m365lake.backup_teams import backup_teams
from m365lake.discovery import add_custodians, create_case
from m365lake.discovery.lake_rows import latest_rows
from m365lake.discovery.production import export_production, verify_production
from m365lake.discovery.production.folder import DAT_FILE
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.emulator.generator_calendar import AGENDA_NAME
from m365lake.emulator.generator_teams import GeneratedThread, generate_teams
from m365lake.lake import Lake, reading
from m365lake.search import search
from m365lake.search.index import update_index
from tests.unit.discovery.test_export_fixtures import InlineExtractor, parse_dat, read_bytes

REPLY_PHRASE = "the quarterly ledger closes on thursday"
ACTOR = "counsel@firm.example"


@dataclass(frozen=True)
class Archived:
    lake: Lake
    thread: GeneratedThread
    reply_id: str
    team_name: str


@pytest.fixture
def tenant() -> Tenant:
    return Tenant.from_seed(generate_tenant(seed=5, users=3, messages_per_user=2))


@pytest.fixture
def archived(tenant: Tenant, emulator_state: Path, tmp_path: Path) -> Iterator[Archived]:
    thread = generate_teams(tenant)
    assert thread is not None
    users = [info.user.user_principal_name for info in tenant.users() if info.has_mailbox]
    reply_id = tenant.post_channel_message(
        thread.team_id,
        thread.channel_id,
        users[1],
        f"<p>Reminder: {REPLY_PHRASE.capitalize()}.</p>",
        reply_to=thread.root_id,
    )
    team = tenant.team_info(thread.team_id)
    assert team is not None
    lake = Lake.open(tmp_path / "lake")
    with EmulatorServer(tenant, emulator_state) as emulator:
        settings = emulator.settings()
        assert not asyncio.run(backup_mail(settings, lake)).failed
        assert not asyncio.run(backup_calendars(settings, lake)).failed
        assert not asyncio.run(backup_contacts(settings, lake)).failed
        assert not asyncio.run(backup_teams(settings, lake)).failed
    update_index(lake, extractor=InlineExtractor())
    yield Archived(lake, thread, reply_id, team.display_name)


def archived_events(lake: Lake) -> dict[tuple[str, str], str]:
    """Return (mailbox, event) → event type of every event with a live version."""
    scan = reading.TableScan(lake, lake.committed_entries("events"))
    with reading.connect(lake) as connection, scan.errors():
        rows = connection.execute(
            f"SELECT mailbox_id, event_id, any_value(event_type) "
            f"FROM {scan.sql('union_by_name = true', connection=connection)} "
            "WHERE change <> 'deleted' GROUP BY ALL"
        ).fetchall()
    return {(str(mailbox), str(event)): str(kind) for mailbox, event, kind in rows}


def test_phrase_only_in_teams_reply(archived: Archived):
    result = search(archived.lake, f'"{REPLY_PHRASE}"')

    assert [(hit.workload, hit.item_id) for hit in result.hits] == [("teams", archived.reply_id)]
    assert result.hits[0].container_id == archived.thread.channel_id
    assert result.hits[0].custodian == archived.team_name


def test_teams_reply_found_by_sender_address(tenant: Tenant, archived: Archived):
    sender = [info.user for info in tenant.users() if info.has_mailbox][1]
    address = sender.mail or sender.user_principal_name

    result = search(archived.lake, f"kind:microsoftteams from:{address}")

    assert archived.reply_id in {hit.item_id for hit in result.hits}


def test_kind_meetings_returns_events_only(archived: Archived):
    expected = set(archived_events(archived.lake))

    result = search(archived.lake, "kind:meetings", limit=10_000)

    assert expected
    assert {hit.workload for hit in result.hits} == {"calendar"}
    assert {(hit.container_id, hit.item_id) for hit in result.hits} == expected
    assert result.total == len(expected)


def test_kinds_partition_the_index(archived: Archived):
    total = search(archived.lake, "kind:email OR NOT kind:email", limit=0).total
    per_kind = {
        kind: search(archived.lake, f"kind:{kind}", limit=0).total
        for kind in ("email", "docs", "meetings", "contacts", "microsoftteams")
    }

    assert per_kind["contacts"] > 0
    assert per_kind["microsoftteams"] > 0
    assert sum(per_kind.values()) == total


def test_deleted_teams_reply_found_with_deleted_at(archived: Archived):
    hits = [
        hit
        for hit in search(archived.lake, "kind:microsoftteams", limit=1000).hits
        if hit.item_id == archived.thread.deleted_reply_id
    ]

    assert len(hits) == 1
    assert hits[0].deleted_at is not None


def test_production_shows_thread_in_order(archived: Archived, tmp_path: Path):
    pytest.importorskip("m365lake.discovery.production.teams_thread")
    lake = archived.lake
    create_case(lake, "Ledger matter", actor=ACTOR, case_id="L")
    add_custodians(lake, "L", [("team", archived.team_name)], actor=ACTOR)
    out = tmp_path / "production"

    result = export_production(
        lake, "L", out, actor=ACTOR, kql=f'"{REPLY_PHRASE}"', extractor=InlineExtractor()
    )

    page, as_json = parse_dat(out / DAT_FILE)
    assert page["RECORDTYPE"] == "Teams Thread"
    assert as_json["PARENTBATES"] == page["BEGBATES"]
    thread = json.loads(read_bytes(out, as_json["NATIVELINK"]))
    ids = [message["id"] for message in thread["messages"]]
    assert ids[0] == archived.thread.root_id
    assert ids[-1] == archived.reply_id
    assert archived.thread.deleted_reply_id in ids
    created = [message["createdDateTime"] for message in thread["messages"]]
    assert created == sorted(created)
    text = read_bytes(out, page["TEXTLINK"]).decode("utf-8-sig")
    assert text.index("Kick-off on Monday") < text.index(REPLY_PHRASE.capitalize())
    assert result.counts["documents_teams_thread"] == 1
    assert verify_production(out).ok


def test_production_gives_each_series_one_ics(archived: Archived, tmp_path: Path):
    pytest.importorskip("m365lake.discovery.production.ics")
    lake = archived.lake
    mailboxes = latest_rows(
        lake, "mailboxes", ["mailbox_id"], ["mailbox_id", "user_principal_name"]
    )
    mailbox = min(mailboxes, key=lambda row: row["user_principal_name"])
    create_case(lake, "Calendar matter", actor=ACTOR, case_id="M")
    add_custodians(lake, "M", [("mailbox", mailbox["user_principal_name"])], actor=ACTOR)
    out = tmp_path / "production"

    result = export_production(
        lake, "M", out, actor=ACTOR, kql="kind:meetings", extractor=InlineExtractor()
    )

    rows = parse_dat(out / DAT_FILE)
    heads = {
        key
        for key, event_type in archived_events(lake).items()
        if key[0] == mailbox["mailbox_id"] and event_type in ("singleInstance", "seriesMaster")
    }
    assert len(rows) == len(heads)
    assert {row["RECORDTYPE"] for row in rows} == {"Meeting"}
    assert {row["SOURCEID"] for row in rows} == {
        f"event:{container}:{item}" for container, item in heads
    }
    series = [
        read_bytes(out, row["NATIVELINK"])
        for row in rows
        if b"RRULE" in read_bytes(out, row["NATIVELINK"])
    ]
    assert series
    assert any(b"RECURRENCE-ID" in native for native in series)
    assert result.counts["documents_meeting"] == len(heads)
    assert verify_production(out).ok


def test_event_attachment_text_found(archived: Archived):
    mailboxes = latest_rows(archived.lake, "mailboxes", ["mailbox_id"], ["mailbox_id"])

    with_attachment = search(archived.lake, "kind:meetings hasattachment:true", limit=100)
    by_text = search(archived.lake, 'kind:meetings "agenda for"', limit=100)
    by_name = search(archived.lake, f'attachmentnames:"{AGENDA_NAME}"', limit=100)

    expected = {(hit.container_id, hit.item_id) for hit in with_attachment.hits}
    assert len(expected) == len(mailboxes)
    assert {(hit.container_id, hit.item_id) for hit in by_text.hits} == expected
    assert {(hit.container_id, hit.item_id) for hit in by_name.hits} == expected

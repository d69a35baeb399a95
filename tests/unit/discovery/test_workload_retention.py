"""Holds and retention over calendar events, contacts and Teams channel messages."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from m365lake import catalog
from m365lake.discovery import add_custodians, create_case, place_hold, read_audit_events
from m365lake.lake import Lake
from m365lake.retention import add_policy, held_versions_in_plan, plan_purge, purge
from tests.unit.discovery.lake_fixture import ALICE, DAY, T0
from tests.unit.discovery.workload_fixture import (
    DESIGN,
    GENERAL,
    LOBBY,
    OTHER_TEAM_ID,
    TEAM_ID,
    TEAM_NAME,
    channel_message,
    contact,
    event,
    event_attachment,
    event_json,
    hosted_content,
    write_teams_directory,
)

NOW = T0 + 100 * DAY
HOUR = timedelta(hours=1)


class Blobs:
    """The blobs the seed wrote, by name."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.digests: dict[str, str] = {}

    def put(self, name: str, data: bytes) -> str:
        digest = self.lake.blobs.put(data)
        self.digests[name] = digest
        return digest

    def exists(self, name: str) -> bool:
        return self.lake.blobs.exists(self.digests[name])


@pytest.fixture
def blobs(lake: Lake) -> Blobs:
    """Commit events, contacts and channel messages beside the mail and files of ``lake``."""
    stored = Blobs(lake)
    agenda = stored.put("agenda", b"%PDF-1.7 agenda of the kick-off " * 64)
    minutes = stored.put("minutes", b"%PDF-1.7 minutes shared by two events " * 64)
    big_json = json.dumps(
        event_json("e-big", "All hands", T0, T0 + HOUR) | {"body": {"content": "x" * 9000}}
    ).encode()
    stored.put("big_json", big_json)
    picture = stored.put("picture", b"\x89PNG picture pasted in General " * 64)
    lobby_picture = stored.put("lobby_picture", b"\x89PNG picture pasted in Lobby " * 64)
    with lake.begin(run_id="seed-outlook", kind="calendar", container=None) as tx:
        tx.write_rows(
            "events",
            [
                event("mb-alice", "e-kickoff", "created", T0, start=T0, end=T0 + HOUR),
                event("mb-alice", "e-kickoff", "updated", T0 + DAY, start=T0, end=T0 + HOUR),
                event(
                    "mb-alice",
                    "e-big",
                    "created",
                    T0,
                    start=T0,
                    end=T0 + HOUR,
                    json_sha256=stored.digests["big_json"],
                    size=len(big_json),
                ),
            ],
            partition={"mailbox_id": "mb-alice"},
        )
        tx.write_rows(
            "events",
            [
                event("mb-bob", "e-review", "created", T0, start=T0, end=T0 + HOUR),
                event("mb-bob", "e-review", "deleted", T0 + 2 * DAY, start=T0, end=T0 + HOUR),
                # Planned long ago for a date after NOW: its end has not passed.
                event("mb-bob", "e-offsite", "created", T0, start=NOW + DAY, end=NOW + DAY + HOUR),
                event(
                    "mb-bob",
                    "e-weekly",
                    "created",
                    T0,
                    start=T0,
                    end=T0 + HOUR,
                    event_type="seriesMaster",
                    recurrence=json.dumps(
                        {
                            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                            "range": {"type": "noEnd", "startDate": "2024-01-01"},
                        }
                    ),
                ),
                event(
                    "mb-bob",
                    "e-sprint",
                    "created",
                    T0,
                    start=T0,
                    end=T0 + HOUR,
                    event_type="seriesMaster",
                    recurrence=json.dumps(
                        {
                            "pattern": {"type": "daily", "interval": 1},
                            "range": {
                                "type": "endDate",
                                "startDate": "2024-01-01",
                                "endDate": "2024-01-12",
                            },
                        }
                    ),
                ),
                # Moved from T0 to after NOW: the first version expired, the second not.
                event("mb-bob", "e-moved", "created", T0, start=T0, end=T0 + HOUR),
                event(
                    "mb-bob",
                    "e-moved",
                    "updated",
                    T0 + DAY,
                    start=NOW + 5 * DAY,
                    end=NOW + 5 * DAY + HOUR,
                ),
            ],
            partition={"mailbox_id": "mb-bob"},
        )
        tx.write_rows(
            "event_attachments",
            [
                event_attachment("mb-alice", "e-kickoff", "a1", T0, agenda, 2048),
                event_attachment("mb-alice", "e-kickoff", "a1", T0 + DAY, agenda, 2048),
            ],
            partition={"mailbox_id": "mb-alice"},
        )
        tx.write_rows(
            "event_attachments",
            [
                event_attachment("mb-bob", "e-review", "a2", T0, minutes, 2432),
                event_attachment("mb-bob", "e-moved", "a3", T0, minutes, 2432),
            ],
            partition={"mailbox_id": "mb-bob"},
        )
        tx.write_rows(
            "contacts",
            [
                contact("mb-alice", "c-fabrikam", "created", T0),
                contact("mb-alice", "c-fabrikam", "updated", T0 + DAY, modified_at=T0 + DAY),
            ],
            partition={"mailbox_id": "mb-alice"},
        )
        tx.write_rows(
            "contacts",
            [
                contact("mb-bob", "c-litware", "created", T0),
                contact("mb-bob", "c-recent", "created", NOW, modified_at=NOW - DAY),
            ],
            partition={"mailbox_id": "mb-bob"},
        )
        tx.commit()
    with lake.begin(run_id="seed-teams", kind="teams", container=None) as tx:
        write_teams_directory(tx)
        tx.write_rows(
            "channel_messages",
            [
                channel_message(TEAM_ID, GENERAL, "1700000000001", "created", T0),
                channel_message(
                    TEAM_ID,
                    GENERAL,
                    "1700000000001",
                    "updated",
                    T0 + DAY,
                    text="Post edited",
                    edited_at=T0 + DAY,
                ),
                channel_message(
                    TEAM_ID,
                    GENERAL,
                    "1700000000002",
                    "created",
                    T0,
                    reply_to_id="1700000000001",
                ),
            ],
            partition={"team_id": TEAM_ID, "channel_id": GENERAL},
        )
        tx.write_rows(
            "channel_messages",
            [channel_message(TEAM_ID, DESIGN, "1700000000001", "created", T0)],
            partition={"team_id": TEAM_ID, "channel_id": DESIGN},
        )
        tx.write_rows(
            "channel_messages",
            [channel_message(OTHER_TEAM_ID, LOBBY, "1700000000009", "created", T0)],
            partition={"team_id": OTHER_TEAM_ID, "channel_id": LOBBY},
        )
        tx.write_rows(
            "channel_message_parts",
            [
                hosted_content(TEAM_ID, GENERAL, "1700000000001", "h1", T0, picture, 1984),
                hosted_content(TEAM_ID, GENERAL, "1700000000001", "h1", T0 + DAY, picture, 1984),
            ],
            partition={"team_id": TEAM_ID, "channel_id": GENERAL},
        )
        tx.write_rows(
            "channel_message_parts",
            [hosted_content(OTHER_TEAM_ID, LOBBY, "1700000000009", "h9", T0, lobby_picture, 1920)],
            partition={"team_id": OTHER_TEAM_ID, "channel_id": LOBBY},
        )
        tx.commit()
    return stored


def rows(lake: Lake, sql: str) -> list[tuple[Any, ...]]:
    return sorted(catalog.run_sql(lake, sql)[1])


def event_versions(lake: Lake) -> list[tuple[Any, ...]]:
    return rows(
        lake,
        "SELECT mailbox_id, event_id, change FROM read_parquet("
        f"{_files(lake, 'events')}, union_by_name = true)",
    )


def _files(lake: Lake, table: str) -> str:
    return "[" + ", ".join(f"'{path}'" for path in lake.committed_files(table)) + "]"


def table_rows(lake: Lake, table: str, columns: str) -> list[tuple[Any, ...]]:
    if not lake.committed_files(table):
        return []
    return rows(
        lake,
        f"SELECT {columns} FROM read_parquet({_files(lake, table)}, union_by_name = true)",
    )


def delete_after(lake: Lake, workload: str, days: int, **options: Any) -> None:
    add_policy(
        lake,
        actor="erin",
        name=f"{workload} {days}d",
        workload=workload,
        action="delete",
        days=days,
        **options,
    )


def hold_custodian(lake: Lake, kind: str, reference: str) -> str:
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [(kind, reference)], actor="carol")
    return place_hold(lake, "C", actor="carol").hold_id


def test_calendar_policy_purges_only_ended_events(lake: Lake, blobs: Blobs) -> None:
    delete_after(lake, "calendar", 30)

    result = purge(lake, actor="erin", apply=True, now=NOW)

    assert event_versions(lake) == [
        ("mb-bob", "e-moved", "updated"),
        ("mb-bob", "e-offsite", "created"),
        ("mb-bob", "e-weekly", "created"),
    ]
    # Attachment rows follow the whole event, so the moved meeting keeps its attachment.
    assert table_rows(lake, "event_attachments", "event_id, attachment_id") == [("e-moved", "a3")]
    assert not blobs.exists("agenda")
    assert not blobs.exists("big_json")
    assert blobs.exists("minutes")
    assert result.counts()["part_rows"] == 3
    assert len(table_rows(lake, "contacts", "contact_id")) == 4
    assert len(table_rows(lake, "channel_messages", "message_id")) == 5


def test_mailbox_hold_keeps_events_and_contacts(lake: Lake, blobs: Blobs) -> None:
    hold_id = hold_custodian(lake, "mailbox", ALICE)
    delete_after(lake, "calendar", 30)
    delete_after(lake, "contacts", 30)

    result = purge(lake, actor="erin", apply=True, now=NOW)

    events = event_versions(lake)
    assert [row for row in events if row[0] == "mb-alice"] == [
        ("mb-alice", "e-big", "created"),
        ("mb-alice", "e-kickoff", "created"),
        ("mb-alice", "e-kickoff", "updated"),
    ]
    assert ("mb-bob", "e-review", "created") not in events
    assert table_rows(lake, "contacts", "mailbox_id, contact_id, change") == [
        ("mb-alice", "c-fabrikam", "created"),
        ("mb-alice", "c-fabrikam", "updated"),
        ("mb-bob", "c-recent", "created"),
    ]
    assert table_rows(lake, "event_attachments", "event_id, captured_at") == [
        ("e-kickoff", T0),
        ("e-kickoff", T0 + DAY),
        ("e-moved", T0),
    ]
    assert blobs.exists("agenda")
    assert blobs.exists("big_json")
    assert {hold_id} == {h for ids in result.plan.held.values() for h in ids}
    assert {s.version.workload for s in result.plan.held} == {"calendar", "contacts"}


def test_team_hold_keeps_every_message_version(lake: Lake, blobs: Blobs) -> None:
    hold_custodian(lake, "team", TEAM_NAME)
    delete_after(lake, "teams", 30)

    result = purge(lake, actor="erin", apply=True, now=NOW)

    assert table_rows(lake, "channel_messages", "channel_id, message_id, change") == [
        (GENERAL, "1700000000001", "created"),
        (GENERAL, "1700000000001", "updated"),
        (GENERAL, "1700000000002", "created"),
        (DESIGN, "1700000000001", "created"),
    ]
    assert table_rows(lake, "channel_message_parts", "channel_id, part_id, captured_at") == [
        (GENERAL, "h1", T0),
        (GENERAL, "h1", T0 + DAY),
    ]
    assert blobs.exists("picture")
    assert not blobs.exists("lobby_picture")
    assert len(result.plan.held) == 4
    assert result.counts()["versions"] == 1
    assert result.counts()["part_rows"] == 1


def test_team_policy_limited_to_one_team(lake: Lake, blobs: Blobs) -> None:
    delete_after(lake, "teams", 30, locations=[("team", OTHER_TEAM_ID)])

    plan = plan_purge(lake, now=NOW)

    assert [(s.version.container_id, s.version.item_id) for s in plan.purge] == [
        (LOBBY, "1700000000009")
    ]


def test_purge_audit_counts_parts(lake: Lake, blobs: Blobs) -> None:
    delete_after(lake, "teams", 30)

    purge(lake, actor="erin", apply=True, now=NOW)

    event = [e for e in read_audit_events(lake) if e.action == "purge"][-1]
    counts = json.loads(event.counts)
    assert counts["versions"] == 5
    assert counts["part_rows"] == 3
    assert counts["blob_candidates"] == 2


@pytest.mark.parametrize(
    ("kind", "reference", "workload"),
    [("mailbox", ALICE, "calendar"), ("mailbox", ALICE, "contacts"), ("team", TEAM_ID, "teams")],
)
def test_held_check_finds_hold_placed_after_plan(
    lake: Lake, blobs: Blobs, kind: str, reference: str, workload: str
) -> None:
    delete_after(lake, workload, 30)
    plan = plan_purge(lake, now=NOW)

    hold_custodian(lake, kind, reference)
    held = held_versions_in_plan(lake, plan)

    assert held
    assert {stored.version.workload for stored in held} == {workload}
    assert held_versions_in_plan(lake, plan_purge(lake, now=NOW)) == {}


def test_keep_policy_outlasts_contact_delete(lake: Lake, blobs: Blobs) -> None:
    delete_after(lake, "contacts", 30)
    add_policy(lake, actor="erin", name="keep", workload="contacts", action="keep", days=365)

    plan = plan_purge(lake, now=NOW)

    assert plan.purge == []
    assert plan.protected == 3

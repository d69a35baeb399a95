"""Holds and retention over calendar events, contacts and Teams channel messages."""

from __future__ import annotations

import json
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
    NOW,
    OTHER_TEAM_ID,
    TEAM_ID,
    TEAM_NAME,
    channel_message,
    seed_workloads,
)


class Blobs:
    """The blobs the seed wrote, by name."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.digests: dict[str, str] = {}

    def exists(self, name: str) -> bool:
        return self.lake.blobs.exists(self.digests[name])


@pytest.fixture
def blobs(lake: Lake) -> Blobs:
    stored = Blobs(lake)
    stored.digests = seed_workloads(lake)
    return stored


def rows(lake: Lake, sql: str) -> list[tuple[Any, ...]]:
    return sorted(catalog.run_sql(lake, sql)[1])


def event_versions(lake: Lake) -> list[tuple[Any, ...]]:
    return table_rows(lake, "events", "mailbox_id, event_id, change")


def table_rows(lake: Lake, table: str, columns: str) -> list[tuple[Any, ...]]:
    return rows(lake, f"SELECT {columns} FROM {table}_rows")


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


def test_team_hold_keeps_linked_file(lake: Lake, blobs: Blobs) -> None:
    with lake.begin(run_id="teams-link", kind="teams", container=TEAM_ID) as tx:
        tx.write_rows(
            "channel_message_parts",
            [
                {
                    "team_id": TEAM_ID,
                    "channel_id": GENERAL,
                    "message_id": "1700000000002",
                    "part_id": "link-1",
                    "captured_at": T0,
                    "kind": "reference",
                    "name": "f1",
                    "content_url": "https://contoso-my.sharepoint.com/personal/alice/f1",
                    "drive_id": "d-alice",
                    "item_id": "f1",
                }
            ],
            partition={"team_id": TEAM_ID, "channel_id": GENERAL},
        )
        tx.commit()
    hold_custodian(lake, "team", TEAM_ID)
    delete_after(lake, "files", 30)

    plan = plan_purge(lake, now=NOW)

    held_files = {s.version.item_id for s in plan.held if s.version.workload == "files"}
    purged_files = {s.version.item_id for s in plan.purge if s.version.workload == "files"}
    assert held_files == {"f1"}
    assert purged_files == {"f2"}


def test_deleted_teams_message_ages_from_deletion(lake: Lake, blobs: Blobs) -> None:
    with lake.begin(run_id="teams-delete", kind="teams", container=TEAM_ID) as tx:
        tx.write_rows(
            "channel_messages",
            [
                channel_message(
                    TEAM_ID,
                    GENERAL,
                    "1700000000002",
                    "updated",
                    NOW - 40 * DAY,
                    text="",
                    soft_deleted_at=NOW - 40 * DAY,
                ),
            ],
            partition={"team_id": TEAM_ID, "channel_id": GENERAL},
        )
        tx.write_rows(
            "channel_messages",
            [
                channel_message(
                    TEAM_ID,
                    DESIGN,
                    "1700000000001",
                    "updated",
                    NOW - 10 * DAY,
                    text="",
                    soft_deleted_at=NOW - 10 * DAY,
                ),
            ],
            partition={"team_id": TEAM_ID, "channel_id": DESIGN},
        )
        tx.commit()
    delete_after(lake, "teams", 30, basis="deleted")

    plan = plan_purge(lake, now=NOW)

    purged = {(s.version.container_id, s.version.item_id) for s in plan.purge}
    assert purged == {(GENERAL, "1700000000002")}
    assert len(plan.purge) == 2

"""Query holds over events, contacts and channel messages, resolved through the real index."""

from __future__ import annotations

import pytest

from m365lake.discovery import add_custodians, create_case, place_hold
from m365lake.errors import SearchIndexError
from m365lake.lake import Lake
from m365lake.restore.contacts_plan import select_contacts
from m365lake.restore.selection import Selection
from m365lake.retention import add_policy, plan_purge, purge
from m365lake.retention.plan import versions_by_item
from m365lake.search import search, update_index
from tests.e2e.test_search_index import InlineExtractor
from tests.unit.discovery.lake_fixture import ALICE, DAY, T0
from tests.unit.discovery.workload_fixture import (
    DESIGN,
    NOW,
    TEAM_ID,
    channel_message,
    contact,
    event,
    seed_workloads,
)

EDITED = "1700000000004"


@pytest.fixture
def indexed(lake: Lake) -> Lake:
    """Seed every workload, edit a phrase out of a Teams post, index, and expire everything."""
    seed_workloads(lake)
    with lake.begin(run_id="teams-edit", kind="teams", container=TEAM_ID) as tx:
        tx.write_rows(
            "channel_messages",
            [
                channel_message(
                    TEAM_ID, DESIGN, EDITED, "created", T0, text="Falcon merger terms attached"
                ),
                channel_message(
                    TEAM_ID,
                    DESIGN,
                    EDITED,
                    "updated",
                    T0 + DAY,
                    text="see the chat instead",
                    edited_at=T0 + DAY,
                ),
            ],
            partition={"team_id": TEAM_ID, "channel_id": DESIGN},
        )
        tx.commit()
    update_index(lake, extractor=InlineExtractor())
    create_case(lake, "Matter", actor="carol", case_id="C")
    for workload in ("calendar", "contacts", "teams"):
        add_policy(lake, actor="erin", name=workload, workload=workload, action="delete", days=0)
    return lake


def held_workloads(lake: Lake) -> dict[str, set[str]]:
    plan = plan_purge(lake, now=NOW + 365 * DAY)
    found: dict[str, set[str]] = {}
    for stored in plan.held:
        found.setdefault(stored.version.workload, set()).add(stored.version.item_id)
    return found


def test_kind_meetings_holds_events_only(indexed: Lake) -> None:
    place_hold(indexed, "C", actor="carol", kql="kind:meetings", all_locations=True)

    held = held_workloads(indexed)

    assert set(held) == {"calendar"}
    assert held["calendar"] >= {"e-kickoff", "e-big", "e-review", "e-moved"}


def test_custodian_query_hold_limited_to_mailbox(indexed: Lake) -> None:
    add_custodians(indexed, "C", [("mailbox", ALICE)], actor="carol")
    place_hold(indexed, "C", actor="carol", kql="kind:contacts")

    assert held_workloads(indexed) == {"contacts": {"c-fabrikam"}}


def test_phrase_edited_out_keeps_message(indexed: Lake) -> None:
    place_hold(indexed, "C", actor="carol", kql='"falcon merger"', all_locations=True)

    purge(indexed, actor="erin", apply=True, now=NOW + 365 * DAY)

    remaining = versions_by_item(indexed)
    assert len(remaining[("teams", DESIGN, EDITED)]) == 2
    # A series without an end never expires, so e-weekly stays without a hold.
    assert set(remaining) == {
        *(key for key in remaining if key[0] in ("mail", "files")),
        ("calendar", "mb-bob", "e-weekly"),
        ("teams", DESIGN, EDITED),
    }
    update_index(indexed, extractor=InlineExtractor())
    teams_hits = search(indexed, "kind:microsoftteams", limit=100, include_deleted=True).hits
    assert [(hit.container_id, hit.item_id) for hit in teams_hits] == [(DESIGN, EDITED)]
    meeting_hits = search(indexed, "kind:meetings", limit=100, include_deleted=True).hits
    assert [hit.item_id for hit in meeting_hits] == ["e-weekly"]


@pytest.mark.parametrize(
    ("table", "row", "partition"),
    [
        (
            "channel_messages",
            channel_message(TEAM_ID, DESIGN, "1700000000008", "created", NOW),
            {"team_id": TEAM_ID, "channel_id": DESIGN},
        ),
        (
            "events",
            event("mb-bob", "e-late", "created", NOW, start=NOW, end=NOW + DAY),
            {"mailbox_id": "mb-bob"},
        ),
        ("contacts", contact("mb-bob", "c-late", "created", NOW), {"mailbox_id": "mb-bob"}),
    ],
)
def test_stale_index_stops_query_hold_purge(
    indexed: Lake, table: str, row: dict[str, object], partition: dict[str, str]
) -> None:
    place_hold(indexed, "C", actor="carol", kql='"falcon merger"', all_locations=True)
    with indexed.begin(run_id="late", kind="teams", container=None) as tx:
        tx.write_rows(table, [row], partition=partition)
        tx.commit()

    with pytest.raises(SearchIndexError, match="Update the index first"):
        plan_purge(indexed, now=NOW + 365 * DAY)


def test_stale_index_message_names_restore(indexed: Lake) -> None:
    with indexed.begin(run_id="late", kind="contacts", container=None) as tx:
        tx.write_rows(
            "contacts",
            [contact("mb-bob", "c-late", "created", NOW)],
            partition={"mailbox_id": "mb-bob"},
        )
        tx.commit()

    with pytest.raises(SearchIndexError) as caught:
        select_contacts(indexed, Selection(kql='"falcon merger"', workloads=("contacts",)))

    message = str(caught.value)
    assert "so the restore --kql could miss them" in message
    assert "query hold" not in message
    assert "Update the index first (m365lake index)" in message

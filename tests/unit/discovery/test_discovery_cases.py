"""Cases: lifecycle, custodian validation, saved searches, and the DuckDB views."""

from __future__ import annotations

import pytest

from m365lake import catalog
from m365lake.discovery import (
    CaseNotFoundError,
    CaseStateError,
    CustodianNotFoundError,
    InvalidRequestError,
    add_custodians,
    close_case,
    create_case,
    delete_search,
    list_cases,
    load_case,
    place_hold,
    read_audit_events,
    release_hold,
    remove_custodian,
    save_search,
)
from m365lake.lake import Lake
from tests.unit.discovery.lake_fixture import ALICE, BOB, SITE_URL


def test_create_case_is_open_and_listed(lake: Lake) -> None:
    case = create_case(lake, "Falcon merger", actor="carol", case_id="CASE-1", description="M&A")

    assert case.status == "open"
    assert case.revision == 1
    assert [item.case_id for item in list_cases(lake)] == ["CASE-1"]
    assert load_case(lake, "CASE-1").case.description == "M&A"


def test_create_case_generates_id(lake: Lake) -> None:
    case = create_case(lake, "Unnamed matter", actor="carol")

    assert case.case_id.startswith("c-")
    assert load_case(lake, case.case_id).case.name == "Unnamed matter"


def test_create_duplicate_case_id_rejected(lake: Lake) -> None:
    create_case(lake, "First", actor="carol", case_id="CASE-1")

    with pytest.raises(CaseStateError, match="already exists"):
        create_case(lake, "Second", actor="carol", case_id="CASE-1")


@pytest.mark.parametrize("case_id", ["", "has space", "a/b", "-leading", "x" * 65])
def test_invalid_case_id_rejected(lake: Lake, case_id: str) -> None:
    with pytest.raises(InvalidRequestError, match="invalid case id"):
        create_case(lake, "Matter", actor="carol", case_id=case_id)


def test_empty_actor_rejected(lake: Lake) -> None:
    with pytest.raises(InvalidRequestError, match="actor is empty"):
        create_case(lake, "Matter", actor="  ")


def test_unknown_case_names_list_command(lake: Lake) -> None:
    with pytest.raises(CaseNotFoundError, match="m365lake case list"):
        load_case(lake, "NOPE")


def test_add_custodians_by_each_reference(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")

    added = add_custodians(
        lake,
        "C",
        [
            ("mailbox", ALICE.upper()),
            ("mailbox", "mb-bob"),
            ("onedrive", ALICE),
            ("site", SITE_URL + "/"),
        ],
        actor="carol",
    )

    assert sorted(item.custodian_id for item in added) == [
        "mailbox:mb-alice",
        "mailbox:mb-bob",
        "onedrive:d-alice",
        "site:site-legal",
    ]
    details = load_case(lake, "C")
    assert details.custodians["mailbox:mb-alice"].label == ALICE
    assert details.case.revision == 2


def test_add_existing_custodian_skipped(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", ALICE)], actor="carol")

    added = add_custodians(lake, "C", [("mailbox", "mb-alice"), ("mailbox", BOB)], actor="carol")

    assert [item.custodian_id for item in added] == ["mailbox:mb-bob"]
    assert len(load_case(lake, "C").custodians) == 2


def test_unknown_mailbox_error_says_how_to_list(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")

    with pytest.raises(CustodianNotFoundError) as caught:
        add_custodians(
            lake, "C", [("mailbox", BOB), ("mailbox", "nobody@contoso.example")], actor="carol"
        )

    message = str(caught.value)
    assert "nobody@contoso.example" in message
    assert "mailboxes" in message
    assert "SELECT mailbox_id, user_principal_name FROM mailboxes" in message
    assert caught.value.kind == "mailbox"
    assert load_case(lake, "C").custodians == {}


@pytest.mark.parametrize(
    ("kind", "reference", "listing"),
    [
        ("onedrive", BOB, "FROM drives WHERE owner_kind = 'user'"),
        ("onedrive", "d-legal", "FROM drives WHERE owner_kind = 'user'"),
        ("site", "https://contoso.sharepoint.com/sites/other", "FROM sites"),
        ("site", "site-missing", "FROM sites"),
    ],
)
def test_unknown_drive_or_site_rejected(
    lake: Lake, kind: str, reference: str, listing: str
) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")

    with pytest.raises(CustodianNotFoundError) as caught:
        add_custodians(lake, "C", [(kind, reference)], actor="carol")

    assert reference in str(caught.value)
    assert listing in str(caught.value)


def test_unknown_custodian_kind_rejected(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")

    with pytest.raises(InvalidRequestError, match="mailbox, onedrive, site"):
        add_custodians(lake, "C", [("teams", "x")], actor="carol")


def test_custodian_of_empty_lake_says_backup_first(tmp_path) -> None:
    empty = Lake.open(tmp_path / "empty")
    create_case(empty, "Matter", actor="carol", case_id="C")

    with pytest.raises(CustodianNotFoundError, match="m365lake backup"):
        add_custodians(empty, "C", [("mailbox", ALICE)], actor="carol")


def test_remove_custodian(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", ALICE), ("mailbox", BOB)], actor="carol")

    remove_custodian(lake, "C", "mailbox:mb-bob", actor="carol")

    assert list(load_case(lake, "C").custodians) == ["mailbox:mb-alice"]


def test_remove_unknown_custodian_lists_known(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", ALICE)], actor="carol")

    with pytest.raises(CaseNotFoundError, match="mailbox:mb-alice"):
        remove_custodian(lake, "C", "mailbox:mb-bob", actor="carol")


def test_remove_held_custodian_rejected(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", ALICE)], actor="carol")
    hold = place_hold(lake, "C", actor="carol")

    with pytest.raises(CaseStateError, match=hold.hold_id):
        remove_custodian(lake, "C", "mailbox:mb-alice", actor="carol")

    release_hold(lake, hold.hold_id, actor="carol", reason="settled")
    remove_custodian(lake, "C", "mailbox:mb-alice", actor="carol")
    assert load_case(lake, "C").custodians == {}


def test_saved_search_round_trip(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")

    search = save_search(lake, "C", "pricing", 'subject:"price list" AND from:alice', actor="dan")

    stored = load_case(lake, "C").searches[search.search_id]
    assert stored.kql == 'subject:"price list" AND from:alice'
    assert stored.saved_by == "dan"
    delete_search(lake, "C", search.search_id, actor="dan")
    assert load_case(lake, "C").searches == {}


def test_empty_search_rejected(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")

    with pytest.raises(InvalidRequestError, match="KQL query is empty"):
        save_search(lake, "C", "nothing", "  ", actor="dan")


def test_close_case_blocks_changes(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")

    closed = close_case(lake, "C", actor="carol", reason="matter ended")

    assert closed.status == "closed"
    assert closed.closed_by == "carol"
    with pytest.raises(CaseStateError, match="closed"):
        add_custodians(lake, "C", [("mailbox", ALICE)], actor="carol")
    with pytest.raises(CaseStateError, match="closed"):
        close_case(lake, "C", actor="carol")
    assert list_cases(lake, include_closed=False) == []


def test_close_with_active_hold_rejected(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", ALICE)], actor="carol")
    hold = place_hold(lake, "C", actor="carol")

    with pytest.raises(CaseStateError, match=f"active hold.*{hold.hold_id}"):
        close_case(lake, "C", actor="carol")


def test_every_change_is_audited(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", ALICE)], actor="dan")
    search = save_search(lake, "C", "s", "budget", actor="dan")
    delete_search(lake, "C", search.search_id, actor="dan")
    remove_custodian(lake, "C", "mailbox:mb-alice", actor="dan")
    close_case(lake, "C", actor="carol")

    events = read_audit_events(lake, case_id="C")

    assert [event.action for event in events] == [
        "case.create",
        "custodian.add",
        "search.save",
        "search.delete",
        "custodian.remove",
        "case.close",
    ]
    assert [event.seq for event in events] == [1, 2, 3, 4, 5, 6]
    assert events[1].actor == "dan"
    assert events[1].counts_dict() == {"added": 1, "already_present": 0}


def test_views_show_current_state(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", ALICE), ("mailbox", BOB)], actor="carol")
    remove_custodian(lake, "C", "mailbox:mb-bob", actor="carol")
    kept = save_search(lake, "C", "kept", "budget", actor="carol")
    dropped = save_search(lake, "C", "dropped", "lunch", actor="carol")
    delete_search(lake, "C", dropped.search_id, actor="carol")
    hold = place_hold(lake, "C", actor="carol")
    release_hold(lake, hold.hold_id, actor="carol", reason="settled")

    def query(sql: str) -> list[tuple[object, ...]]:
        return catalog.run_sql(lake, sql)[1]

    assert query("SELECT case_id, revision, status FROM cases") == [("C", 8, "open")]
    assert query("SELECT custodian_id FROM case_custodians") == [("mailbox:mb-alice",)]
    assert query("SELECT count(*) FROM case_custodians_rows") == [(3,)]
    assert query("SELECT search_id FROM case_searches") == [(kept.search_id,)]
    assert query("SELECT hold_id, status, release_reason FROM holds") == [
        (hold.hold_id, "released", "settled")
    ]
    assert query("SELECT list(seq) FROM audit_events") == [([1, 2, 3, 4, 5, 6, 7, 8],)]

"""Query holds apply to every archived version, not only the one the index contains."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

import m365lake.search
from m365lake.discovery import add_custodians, create_case, place_hold, release_hold
from m365lake.discovery.coverage import HoldCoverage
from m365lake.discovery.query_versions import match_older_versions
from m365lake.lake import Lake
from m365lake.retention import add_policy, held_versions_in_plan, plan_purge, purge
from m365lake.retention.plan import versions_by_item
from tests.e2e.test_search_index import InlineExtractor
from tests.unit.discovery.lake_fixture import ALICE, DAY, T0, drive_item, message
from tests.unit.discovery.test_discovery_holds import FakeHit, FakeIndex

LATER = datetime.now().astimezone() + timedelta(days=1)


@pytest.fixture
def fake_index(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> FakeIndex:
    index = FakeIndex(lake, {})
    monkeypatch.setattr(m365lake.search, "search", index, raising=False)
    return index


@pytest.fixture
def edited(lake: Lake) -> Lake:
    """Add items whose older version contains "budget" and whose newest does not.

    m9 was renamed and then deleted in the tenant. f9 was renamed and modified on day 5.
    m8 and f8 never mention the budget.
    """
    with lake.begin(run_id="edits", kind="mail", container=None) as tx:
        tx.write_rows(
            "messages",
            [
                message("mb-alice", "m9", "created", T0, subject="budget forecast"),
                message("mb-alice", "m9", "updated", T0 + DAY, subject="lunch"),
                message("mb-alice", "m9", "deleted", T0 + 2 * DAY),
                message("mb-alice", "m8", "created", T0, subject="travel"),
                message("mb-alice", "m8", "updated", T0 + DAY, subject="travel plans"),
            ],
            partition={"mailbox_id": "mb-alice"},
        )
        tx.write_rows(
            "drive_items",
            [
                drive_item("d-alice", "f9", "created", T0, name="budget.xlsx"),
                drive_item(
                    "d-alice", "f9", "updated", T0 + DAY, name="notes.txt", modified_at=T0 + 5 * DAY
                ),
                drive_item("d-alice", "f8", "created", T0, name="menu.txt"),
                drive_item("d-alice", "f8", "updated", T0 + DAY, name="menu2.txt"),
            ],
            partition={"drive_id": "d-alice"},
        )
        tx.commit()
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", ALICE), ("onedrive", ALICE)], actor="carol")
    add_policy(lake, actor="erin", name="all mail", workload="mail", action="delete", days=0)
    add_policy(lake, actor="erin", name="all files", workload="files", action="delete", days=0)
    return lake


def _items(lake: Lake) -> set[str]:
    return {key[2] for key in versions_by_item(lake)}


def _versions_of(lake: Lake, item_id: str) -> int:
    return sum(len(v) for key, v in versions_by_item(lake).items() if key[2] == item_id)


def test_older_version_keeps_item_held(edited: Lake, fake_index: FakeIndex) -> None:
    # The index contains only the newest live versions, which do not say "budget".
    place_hold(edited, "C", actor="carol", kql="budget")
    before = {item: _versions_of(edited, item) for item in ("m9", "f9")}

    result = purge(edited, actor="erin", apply=True, now=LATER)

    assert before == {"m9": 3, "f9": 2}
    assert {item: _versions_of(edited, item) for item in ("m9", "f9")} == before
    assert "m8" not in _items(edited)
    assert "f8" not in _items(edited)
    # m9's tombstone is not counted: it is only considered once its content can go.
    assert result.counts()["held"] == 4


def test_released_hold_lets_next_purge_remove(edited: Lake, fake_index: FakeIndex) -> None:
    hold = place_hold(edited, "C", actor="carol", kql="budget")
    purge(edited, actor="erin", apply=True, now=LATER)
    assert {"m9", "f9"} <= _items(edited)

    release_hold(edited, hold.hold_id, actor="carol", reason="matter settled")
    purge(edited, actor="erin", apply=True, now=LATER)

    assert not {"m9", "f9"} & _items(edited)


def test_date_range_selects_matching_version(edited: Lake, fake_index: FakeIndex) -> None:
    # f9's "budget" version is dated T0, inside the first hold's range and outside the
    # second's; m9 was received at T0 for both holds' versions.
    place_hold(edited, "C", actor="carol", kql="filename:budget", date_end=T0 + DAY)
    place_hold(edited, "C", actor="carol", kql="subject:budget", date_start=T0 + DAY)

    plan = plan_purge(edited, now=LATER)

    held_items = {stored.version.item_id for stored in plan.held}
    purged_items = {stored.version.item_id for stored in plan.purge}
    assert "f9" in held_items
    assert "f9" not in purged_items
    assert "m9" in purged_items
    assert "m9" not in held_items


def test_index_hit_on_newest_needs_no_check(edited: Lake, fake_index: FakeIndex) -> None:
    fake_index.hits["lunch"] = [FakeHit("mail", "mb-alice", "m9")]
    place_hold(edited, "C", actor="carol", kql="lunch")
    coverage = HoldCoverage.load(edited)
    items = {key: v for key, v in versions_by_item(edited).items() if key[2] == "m9"}
    coverage.settle_index_hits({key: [s.version for s in v] for key, v in items.items()})

    evaluated = match_older_versions(edited, coverage, items, extractor=InlineExtractor())

    assert evaluated == 0
    assert all(
        coverage.holds_covering(stored.version) for stored in items[("mail", "mb-alice", "m9")]
    )


def test_unmatched_item_checks_older_versions_only(edited: Lake, fake_index: FakeIndex) -> None:
    place_hold(edited, "C", actor="carol", kql="nomatchword")
    coverage = HoldCoverage.load(edited)
    items = {key: v for key, v in versions_by_item(edited).items() if key[2] in ("m8", "m9")}

    evaluated = match_older_versions(edited, coverage, items, extractor=InlineExtractor())

    # m8: its first version (the second is the indexed one). m9: its first version (the
    # second is the indexed one, the third its tombstone).
    assert evaluated == 2
    assert not any(
        coverage.holds_covering(stored.version)
        for versions in items.values()
        for stored in versions
    )


def test_hold_check_sees_older_versions(edited: Lake, fake_index: FakeIndex) -> None:
    plan = plan_purge(edited, now=LATER)
    assert "m9" in {stored.version.item_id for stored in plan.purge}

    hold = place_hold(edited, "C", actor="carol", kql="budget")
    held = held_versions_in_plan(edited, plan)

    assert {stored.version.item_id for stored in held} == {"m9", "f9"}
    assert all(hold_ids == [hold.hold_id] for hold_ids in held.values())
    assert held_versions_in_plan(edited, plan_purge(edited, now=LATER)) == {}


def test_date_ranged_hit_uses_indexed_version(edited: Lake, fake_index: FakeIndex) -> None:
    # The index matched f9's newest version ("notes.txt", modified on day 5). A hold whose
    # range ends before day 5 does not hold f9 through that hit, and f9's older version
    # in the range does not match "notes"; a hold whose range contains day 5 holds f9.
    fake_index.hits["notes"] = [FakeHit("files", "d-alice", "f9", T0 + DAY)]
    early = place_hold(edited, "C", actor="carol", kql="notes", date_end=T0 + DAY)
    late = place_hold(edited, "C", actor="carol", kql="notes", date_start=T0 + 3 * DAY)

    plan = plan_purge(edited, now=LATER)

    f9 = [stored for stored in plan.held if stored.version.item_id == "f9"]
    assert len(f9) == 2
    assert all(plan.held[stored] == [late.hold_id] for stored in f9)
    assert early.hold_id not in {h for ids in plan.held.values() for h in ids}

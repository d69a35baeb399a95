"""Legal holds: placing, releasing, and which item versions they cover."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

import m365lake.search
from m365lake.discovery import (
    CaseNotFoundError,
    CaseStateError,
    HoldCoverage,
    InvalidRequestError,
    ItemVersion,
    add_custodians,
    covered_versions,
    create_case,
    list_holds,
    place_hold,
    read_audit_events,
    release_hold,
)
from m365lake.errors import KqlSyntaxError, SearchIndexError
from m365lake.lake import Lake
from tests.unit.discovery.lake_fixture import ALICE, DAY, SITE_URL, T0

M1_VERSIONS = [
    ItemVersion("mail", "mb-alice", "m1", T0, T0),
    ItemVersion("mail", "mb-alice", "m1", T0 + DAY, T0),
    ItemVersion("mail", "mb-alice", "m1", T0 + 2 * DAY, None),
]
M2 = ItemVersion("mail", "mb-alice", "m2", T0, T0 + 40 * DAY)
M3 = ItemVersion("mail", "mb-bob", "m3", T0, T0)
F1_OLD = ItemVersion("files", "d-alice", "f1", T0, T0)
F1_NEW = ItemVersion("files", "d-alice", "f1", T0 + DAY, T0 + DAY)
F2 = ItemVersion("files", "d-legal", "f2", T0, T0)
EVERY_VERSION = [*M1_VERSIONS, M2, M3, F1_OLD, F1_NEW, F2]


@pytest.fixture
def case(lake: Lake) -> str:
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(
        lake,
        "C",
        [("mailbox", ALICE), ("onedrive", ALICE), ("site", SITE_URL)],
        actor="carol",
    )
    return "C"


@dataclass
class FakeHit:
    workload: str
    container_id: str
    item_id: str
    captured_at: datetime | None = None


@dataclass
class FakeResult:
    total: int
    hits: list[FakeHit]
    index_seq: int


class FakeIndex:
    """Stands in for m365lake.search.search: fixed hits per query, up to date with the lake."""

    def __init__(self, lake: Lake, hits: dict[str, list[FakeHit]]) -> None:
        self.lake = lake
        self.hits = hits
        self.limits: list[int] = []
        self.index_seq: int | None = None

    def __call__(self, lake: Lake, query: str, *, limit: int, include_deleted: bool) -> FakeResult:
        assert include_deleted
        self.limits.append(limit)
        found = self.hits.get(query, [])
        seq = self.index_seq if self.index_seq is not None else lake.head().seq
        return FakeResult(len(found), found[:limit], seq)


@pytest.fixture
def fake_index(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> FakeIndex:
    index = FakeIndex(lake, {})
    monkeypatch.setattr(m365lake.search, "search", index, raising=False)
    return index


def covered(lake: Lake) -> dict[ItemVersion, list[str]]:
    return covered_versions(lake, EVERY_VERSION)


def test_no_holds_cover_nothing(lake: Lake, case: str) -> None:
    assert covered(lake) == {}


def test_custodian_hold_covers_every_version(lake: Lake, case: str) -> None:
    hold = place_hold(lake, case, actor="carol", custodian_ids=["mailbox:mb-alice"])

    result = covered(lake)

    assert set(result) == {*M1_VERSIONS, M2}
    assert result[M1_VERSIONS[2]] == [hold.hold_id]


def test_custodian_hold_covers_deleted_items(lake: Lake, case: str) -> None:
    place_hold(lake, case, actor="carol", custodian_ids=["mailbox:mb-alice"])

    deleted_version = M1_VERSIONS[2]

    assert deleted_version in covered(lake)


def test_default_hold_covers_all_custodians(lake: Lake, case: str) -> None:
    hold = place_hold(lake, case, actor="carol")

    assert hold.custodian_ids == ("mailbox:mb-alice", "onedrive:d-alice", "site:site-legal")
    assert set(covered(lake)) == {*M1_VERSIONS, M2, F1_OLD, F1_NEW, F2}


def test_site_hold_covers_site_drives(lake: Lake, case: str) -> None:
    place_hold(lake, case, actor="carol", custodian_ids=["site:site-legal"])

    assert set(covered(lake)) == {F2}


def test_date_range_uses_item_dates(lake: Lake, case: str) -> None:
    place_hold(
        lake,
        case,
        actor="carol",
        custodian_ids=["mailbox:mb-alice", "onedrive:d-alice"],
        date_start=T0 + DAY,
        date_end=T0 + 30 * DAY,
    )

    result = covered(lake)

    # m1's versions were received at T0, before the range. The tombstone has no date,
    # so it is kept. m2 was received after the range; f1's second version is inside it.
    assert set(result) == {M1_VERSIONS[2], F1_NEW}


def test_date_range_start_inclusive_end_exclusive(lake: Lake, case: str) -> None:
    place_hold(
        lake,
        case,
        actor="carol",
        custodian_ids=["onedrive:d-alice"],
        date_start=T0,
        date_end=T0 + DAY,
    )

    assert set(covered(lake)) == {F1_OLD}


def test_two_holds_both_reported(lake: Lake, case: str) -> None:
    first = place_hold(lake, case, actor="carol", custodian_ids=["mailbox:mb-alice"])
    second = place_hold(lake, case, actor="carol")

    assert covered(lake)[M2] == [first.hold_id, second.hold_id]


def test_released_hold_covers_nothing(lake: Lake, case: str) -> None:
    hold = place_hold(lake, case, actor="carol")

    release_hold(lake, hold.hold_id, actor="dan", reason="matter settled")

    assert covered(lake) == {}
    released = list_holds(lake, case_id=case)[0]
    assert released.status == "released"
    assert released.released_by == "dan"
    assert released.release_reason == "matter settled"


@pytest.mark.parametrize("reason", ["", "   "])
def test_release_requires_reason(lake: Lake, case: str, reason: str) -> None:
    hold = place_hold(lake, case, actor="carol")

    with pytest.raises(InvalidRequestError, match="needs a reason"):
        release_hold(lake, hold.hold_id, actor="dan", reason=reason)

    assert list_holds(lake, active_only=True) == [hold]


def test_release_twice_rejected(lake: Lake, case: str) -> None:
    hold = place_hold(lake, case, actor="carol")
    release_hold(lake, hold.hold_id, actor="dan", reason="settled")

    with pytest.raises(CaseStateError, match="already released"):
        release_hold(lake, hold.hold_id, actor="dan", reason="settled again")


def test_release_unknown_hold_says_how_to_list(lake: Lake, case: str) -> None:
    with pytest.raises(CaseNotFoundError, match="m365lake hold list"):
        release_hold(lake, "h-missing", actor="dan", reason="settled")


def test_hold_on_unknown_custodian_rejected(lake: Lake, case: str) -> None:
    with pytest.raises(CaseNotFoundError, match="mailbox:mb-bob"):
        place_hold(lake, case, actor="carol", custodian_ids=["mailbox:mb-bob"])


def test_hold_without_custodians_rejected(lake: Lake) -> None:
    create_case(lake, "Empty", actor="carol", case_id="E")

    with pytest.raises(CaseStateError, match="no custodians"):
        place_hold(lake, "E", actor="carol")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"all_locations": True}, "needs a KQL query"),
        ({"kql": "  "}, "query is empty"),
        ({"kql": "x", "all_locations": True, "custodian_ids": ["mailbox:mb-alice"]}, "not both"),
        ({"date_start": T0 + DAY, "date_end": T0}, "date range is empty"),
        ({"date_start": datetime(2024, 1, 1)}, "no time zone"),
    ],
)
def test_invalid_hold_rejected(
    lake: Lake, case: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        place_hold(lake, case, actor="carol", **options)


def test_invalid_kql_rejected(lake: Lake, case: str) -> None:
    with pytest.raises(KqlSyntaxError):
        place_hold(lake, case, actor="carol", kql="budget AND")


def test_hold_and_release_are_audited(lake: Lake, case: str) -> None:
    hold = place_hold(lake, case, actor="carol", kql="budget", date_start=T0)
    release_hold(lake, hold.hold_id, actor="dan", reason="settled")

    placed, released = read_audit_events(lake, case_id=case)[-2:]

    assert placed.action == "hold"
    assert placed.parameters_dict()["kql"] == "budget"
    assert placed.parameters_dict()["date_start"] == T0.isoformat()
    assert placed.counts_dict() == {"custodians": 3}
    assert released.action == "release"
    assert released.parameters_dict() == {"hold_id": hold.hold_id, "reason": "settled"}


def test_query_hold_covers_matching_items(lake: Lake, case: str, fake_index: FakeIndex) -> None:
    fake_index.hits["budget"] = [
        FakeHit("mail", "mb-alice", "m1"),
        FakeHit("mail", "mb-bob", "m3"),
        FakeHit("files", "d-legal", "f2"),
    ]
    hold = place_hold(lake, case, actor="carol", kql="budget")

    result = covered(lake)

    # m3 matches but mb-bob is not a custodian of the hold.
    assert set(result) == {*M1_VERSIONS, F2}
    assert result[F2] == [hold.hold_id]
    assert fake_index.limits == [0, 3]


def test_query_hold_on_all_locations(lake: Lake, case: str, fake_index: FakeIndex) -> None:
    fake_index.hits["budget"] = [FakeHit("mail", "mb-bob", "m3")]

    place_hold(lake, case, actor="carol", kql="budget", all_locations=True)

    assert set(covered(lake)) == {M3}


def test_query_hold_with_stale_index_raises(lake: Lake, case: str, fake_index: FakeIndex) -> None:
    place_hold(lake, case, actor="carol", kql="budget")
    fake_index.index_seq = 1

    with pytest.raises(SearchIndexError, match="commits 2 added items"):
        HoldCoverage.load(lake)


def test_stale_index_ignores_discovery_commits(
    lake: Lake, case: str, fake_index: FakeIndex
) -> None:
    fake_index.index_seq = lake.head().seq
    place_hold(lake, case, actor="carol", kql="budget")

    assert HoldCoverage.load(lake).holds[0].kql == "budget"


def test_query_hold_without_index_raises(lake: Lake, case: str) -> None:
    place_hold(lake, case, actor="carol", kql="budget")

    with pytest.raises(SearchIndexError):
        covered(lake)

"""Teams teams as case custodians, resolved from the archived ``teams`` table."""

from __future__ import annotations

import pytest

from m365lake.discovery import add_custodians, create_case, load_case
from m365lake.discovery.custodians import resolve_custodian, team_channel_ids
from m365lake.discovery.errors import CustodianNotFoundError, InvalidRequestError
from m365lake.lake import Lake
from tests.unit.discovery.workload_fixture import (
    DESIGN,
    GENERAL,
    LOBBY,
    OTHER_TEAM_ID,
    TEAM_ID,
    TEAM_NAME,
    seed_teams_directory,
)


@pytest.fixture
def teams_lake(lake: Lake) -> Lake:
    seed_teams_directory(lake)
    return lake


@pytest.mark.parametrize("reference", [TEAM_ID, TEAM_NAME, TEAM_NAME.upper(), f" {TEAM_NAME} "])
def test_team_found_by_id_or_name(teams_lake: Lake, reference: str) -> None:
    resolved = resolve_custodian(teams_lake, "team", reference)

    assert resolved.kind == "team"
    assert resolved.container_id == TEAM_ID
    assert resolved.label == TEAM_NAME


def test_team_custodian_added_to_case(teams_lake: Lake) -> None:
    create_case(teams_lake, "Matter", actor="carol", case_id="C")

    added = add_custodians(teams_lake, "C", [("team", TEAM_NAME)], actor="carol")

    assert [item.custodian_id for item in added] == [f"team:{TEAM_ID}"]
    custodian = load_case(teams_lake, "C").custodians[f"team:{TEAM_ID}"]
    assert custodian.label == TEAM_NAME
    assert custodian.requested_as == TEAM_NAME


def test_unknown_team_lists_close_matches(teams_lake: Lake) -> None:
    with pytest.raises(CustodianNotFoundError) as caught:
        resolve_custodian(teams_lake, "team", "Project Falkon")

    message = str(caught.value)
    assert "no team 'Project Falkon'" in message
    assert f"Close matches: {TEAM_NAME!r}" in message
    assert "Facilities" not in message
    assert "SELECT team_id, display_name FROM teams" in message
    assert "has no row with a team_id or display_name equal to it" in message
    assert "Only a team that was backed up (m365lake backup) can be named here." in message
    assert caught.value.kind == "team"


def test_unknown_team_without_close_match(teams_lake: Lake) -> None:
    with pytest.raises(CustodianNotFoundError) as caught:
        resolve_custodian(teams_lake, "team", "Payroll")

    assert "Close matches" not in str(caught.value)
    assert "2 archived" in str(caught.value)


def test_team_name_shared_by_two_teams_rejected(teams_lake: Lake) -> None:
    with teams_lake.begin(run_id="rename", kind="teams", container=None) as tx:
        tx.write_rows(
            "teams", [{"team_id": OTHER_TEAM_ID, "display_name": TEAM_NAME}], partition={}
        )
        tx.commit()

    with pytest.raises(InvalidRequestError, match="matches 2 entries"):
        resolve_custodian(teams_lake, "team", TEAM_NAME)
    assert resolve_custodian(teams_lake, "team", OTHER_TEAM_ID).container_id == OTHER_TEAM_ID


def test_team_channels_mapped_to_team(teams_lake: Lake) -> None:
    assert team_channel_ids(teams_lake, {TEAM_ID}) == {GENERAL: TEAM_ID, DESIGN: TEAM_ID}
    assert team_channel_ids(teams_lake, {OTHER_TEAM_ID}) == {LOBBY: OTHER_TEAM_ID}
    assert team_channel_ids(teams_lake, set()) == {}

"""Which teams ``backup --team`` selects: by id, or by display name ignoring case."""

from __future__ import annotations

from m365lake.backup_teams import select_teams
from m365lake.sources.teams_list import Team

FALCON = Team("team-falcon", "Project Falcon")
LOBBY = Team("team-lobby", "Lobby")
TWIN_A = Team("team-twin-a", "Twins")
TWIN_B = Team("team-twin-b", "twins")
FOUND = [FALCON, LOBBY, TWIN_A, TWIN_B]


def test_id_and_name_select_teams() -> None:
    failed: dict[str, str] = {}

    selected = select_teams(FOUND, ["team-lobby", "project falcon", "Project Falcon"], failed)

    assert selected == [LOBBY, FALCON]
    assert failed == {}


def test_unknown_name_fails_with_close_match() -> None:
    failed: dict[str, str] = {}

    selected = select_teams(FOUND, ["Project Falkon"], failed)

    assert selected == []
    assert (
        "no team with this id or display name among the tenant's 4 teams"
        in failed["Project Falkon"]
    )
    assert "'Project Falcon' (id team-falcon)" in failed["Project Falkon"]


def test_shared_name_asks_for_the_id() -> None:
    failed: dict[str, str] = {}

    selected = select_teams(FOUND, ["TWINS"], failed)

    assert selected == []
    assert (
        failed["TWINS"] == "2 teams have this display name (team-twin-a, team-twin-b); give the id"
    )

"""The case, hold, audit and verify commands, run through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from m365lake.discovery import load_case, read_audit_events
from m365lake.discovery.cli import register
from m365lake.lake import Lake
from tests.unit.discovery.lake_fixture import ALICE, BOB
from tests.unit.discovery.workload_fixture import TEAM_ID, TEAM_NAME, seed_teams_directory


@pytest.fixture
def main() -> click.Group:
    @click.group()
    def group() -> None:
        """Stands in for the m365lake command."""

    register(group)
    return group


@pytest.fixture
def run(main: click.Group, lake: Lake):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(main, [*args, "--lake", str(lake.root)], env=env)

    return invoke


def test_register_adds_commands(main: click.Group) -> None:
    assert {"case", "hold", "audit", "verify"} <= set(main.commands)


def test_case_lifecycle(run, lake: Lake) -> None:  # type: ignore[no-untyped-def]
    created = run("case", "create", "Falcon", "--id", "CASE-7", "--actor", "carol")
    added = run(
        "case",
        "add-custodian",
        "CASE-7",
        "--mailbox",
        ALICE,
        "--onedrive",
        ALICE,
        "--actor",
        "carol",
    )
    listed = run("case", "list", "--format", "json")
    shown = run("case", "show", "CASE-7")
    closed = run("case", "close", "CASE-7", "--reason", "done", "--actor", "carol")

    assert created.exit_code == 0, created.output
    assert created.output.strip() == "CASE-7"
    assert added.exit_code == 0, added.output
    assert "added mailbox:mb-alice (alice@contoso.example)" in added.output
    assert json.loads(listed.output)[0]["status"] == "open"
    assert "onedrive:d-alice" in shown.output
    assert closed.exit_code == 0, closed.output
    assert load_case(lake, "CASE-7").case.status == "closed"


def test_actor_defaults_to_environment(run, lake: Lake) -> None:  # type: ignore[no-untyped-def]
    result = run("case", "create", "Falcon", "--id", "C", env={"M365LAKE_ACTOR": "svc-legal"})

    assert result.exit_code == 0, result.output
    assert read_audit_events(lake)[0].actor == "svc-legal"


def test_unknown_custodian_is_one_line_error(run) -> None:  # type: ignore[no-untyped-def]
    run("case", "create", "Falcon", "--id", "C", "--actor", "carol")

    result = run("case", "add-custodian", "C", "--mailbox", "nobody@x.example", "--actor", "c")

    assert result.exit_code == 1
    assert "Error: no mailbox 'nobody@x.example' in the lake" in result.output
    assert "Traceback" not in result.output


def test_add_team_custodian(run, lake: Lake) -> None:  # type: ignore[no-untyped-def]
    seed_teams_directory(lake)
    run("case", "create", "Falcon", "--id", "C", "--actor", "carol")

    added = run("case", "add-custodian", "C", "--team", TEAM_NAME, "--actor", "carol")
    missing = run("case", "add-custodian", "C", "--team", "Project Falkon", "--actor", "carol")

    assert added.exit_code == 0, added.output
    assert added.output.strip() == f"added team:{TEAM_ID} ({TEAM_NAME})"
    assert set(load_case(lake, "C").custodians) == {f"team:{TEAM_ID}"}
    assert missing.exit_code == 1
    assert f"Close matches: {TEAM_NAME!r}" in missing.output


def test_add_custodian_needs_one(run) -> None:  # type: ignore[no-untyped-def]
    result = run("case", "add-custodian", "C", "--actor", "carol")

    assert result.exit_code == 2
    assert "--mailbox, --onedrive, --site or --team" in result.output


def test_hold_place_list_release(run, lake: Lake) -> None:  # type: ignore[no-untyped-def]
    run("case", "create", "Falcon", "--id", "C", "--actor", "carol")
    run("case", "add-custodian", "C", "--mailbox", BOB, "--actor", "carol")

    placed = run(
        "hold", "place", "C", "--start", "2024-01-01", "--end", "2024-01-31", "--actor", "carol"
    )
    hold_id = placed.output.strip()
    listed = run("hold", "list", "--format", "json")
    missing_reason = run("hold", "release", hold_id, "--actor", "dan")
    released = run("hold", "release", hold_id, "--reason", "settled", "--actor", "dan")

    assert placed.exit_code == 0, placed.output
    hold = json.loads(listed.output)[0]
    assert hold["date_start"] == "2024-01-01T00:00:00+00:00"
    assert hold["date_end"] == "2024-02-01T00:00:00+00:00"
    assert hold["custodian_ids"] == ["mailbox:mb-bob"]
    assert missing_reason.exit_code == 2
    assert "--reason" in missing_reason.output
    assert released.exit_code == 0, released.output
    assert load_case(lake, "C").holds[hold_id].release_reason == "settled"


def test_audit_command_prints_trail(run) -> None:  # type: ignore[no-untyped-def]
    run("case", "create", "Falcon", "--id", "C", "--actor", "carol")
    run("case", "close", "C", "--actor", "dan")

    result = run("audit", "--format", "json")

    events = json.loads(result.stdout)
    assert [(event["seq"], event["action"], event["actor"]) for event in events] == [
        (1, "case.create", "carol"),
        (2, "case.close", "dan"),
    ]
    assert f"audit head: event 2, hash {events[1]['hash']}" in result.stderr


def test_audit_command_filters_by_case(run) -> None:  # type: ignore[no-untyped-def]
    run("case", "create", "One", "--id", "A", "--actor", "carol")
    run("case", "create", "Two", "--id", "B", "--actor", "carol")

    result = run("audit", "--case", "B", "--format", "json")

    assert [event["case_id"] for event in json.loads(result.stdout)] == ["B"]


def test_verify_passes_with_sample(run, lake: Lake) -> None:  # type: ignore[no-untyped-def]
    for number in range(5):
        lake.blobs.put(f"blob {number}".encode())
    run("case", "create", "Falcon", "--id", "C", "--actor", "carol")

    result = run("verify", "--sample", "2", "--seed", "7")

    assert result.exit_code == 0, result.output
    assert "2 of 5 blobs (random sample, --seed 7)" in result.output
    assert "1 audit events" in result.output


def test_verify_reports_tampered_audit(run, lake: Lake) -> None:  # type: ignore[no-untyped-def]
    run("case", "create", "Falcon", "--id", "C", "--actor", "carol")
    [path] = lake.committed_files("audit_events")
    path.write_bytes(b"PAR1 damaged")

    result = run("verify", "--no-blobs")

    assert result.exit_code == 1
    assert f"audit events in {lake.storage.relative(path)}" in result.stdout
    assert "failed with" in result.stderr


def test_read_commands_need_existing_lake(main: click.Group, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["case", "list", "--lake", str(tmp_path / "none")])

    assert result.exit_code == 1
    assert "no lake at" in result.output


def test_verify_checks_audit_head(run, lake: Lake) -> None:  # type: ignore[no-untyped-def]
    run("case", "create", "Falcon", "--id", "C", "--actor", "carol")
    [event] = read_audit_events(lake)

    matching = run("verify", "--no-blobs", "--audit-head", f"1:{event.hash}")
    other = run("verify", "--no-blobs", "--audit-head", f"1:{'0' * 64}")
    malformed = run("verify", "--no-blobs", "--audit-head", "latest")

    assert matching.exit_code == 0, matching.output
    assert other.exit_code == 1
    assert "the hash recorded outside the lake for event 1" in other.stdout
    assert malformed.exit_code == 2
    assert "is not SEQ:HASH" in malformed.output

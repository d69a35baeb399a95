"""The ready-made queries over calendar events, contacts and Teams channel messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from m365lake import catalog
from m365lake.archive_stats import custodian_volume
from m365lake.discovery import add_custodians, create_case, place_hold
from m365lake.lake import Lake
from m365lake.sources.rows import failure_row
from m365lake.workload_stats import workload_markdown, workload_totals
from tests.unit.discovery.lake_fixture import ALICE, T0
from tests.unit.discovery.workload_fixture import (
    GENERAL,
    NOW,
    TEAM_ID,
    TEAM_NAME,
    channel_message,
    seed_workloads,
)

QUERY_DIR = Path(__file__).resolve().parents[3] / "queries"


def run_query(lake: Lake, name: str) -> list[dict[str, Any]]:
    columns, rows = catalog.run_sql(lake, (QUERY_DIR / f"{name}.sql").read_text())
    return [dict(zip(columns, row, strict=True)) for row in rows]


@pytest.fixture
def seeded(lake: Lake) -> Lake:
    seed_workloads(lake)
    return lake


def test_archived_per_workload_counts(seeded: Lake) -> None:
    rows = {row["workload"]: row for row in run_query(seeded, "archived_per_workload")}

    assert list(rows) == ["mail", "files", "calendar", "contacts", "teams"]
    assert rows["calendar"]["containers"] == 2
    assert rows["calendar"]["live_items"] == 6
    assert rows["calendar"]["deleted_in_tenant"] == 1
    assert rows["calendar"]["versions"] == 9
    assert rows["contacts"]["live_items"] == 3
    assert rows["contacts"]["versions"] == 4
    assert rows["teams"]["containers"] == 3
    assert rows["teams"]["live_items"] == 4
    assert rows["teams"]["versions"] == 5
    assert rows["teams"]["version_bytes"] > 0
    assert rows["mail"]["deleted_in_tenant"] == 1


def test_archived_per_workload_empty_lake(tmp_path: Path) -> None:
    rows = run_query(Lake.open(tmp_path / "empty"), "archived_per_workload")

    assert [row["workload"] for row in rows] == ["mail", "files", "calendar", "contacts", "teams"]
    assert {row["versions"] for row in rows} == {0}


def test_overview_totals_match_query(seeded: Lake) -> None:
    add_failures(seeded)
    queried = run_query(seeded, "archived_per_workload")

    totals = workload_totals(seeded)

    assert [total.workload for total in totals] == [row["workload"] for row in queried]
    for total, row in zip(totals, queried, strict=True):
        assert total.containers == row["containers"], total.workload
        assert total.live_items == row["live_items"], total.workload
        assert total.versions == row["versions"], total.workload
        assert total.version_bytes == row["version_bytes"], total.workload
    gaps = {total.workload: total.open_gaps for total in totals}
    assert gaps == {"mail": 0, "files": 0, "calendar": 0, "contacts": 1, "teams": 1}
    assert "| teams | 3 | 5 | 0 | 6 |" in workload_markdown(totals)


def add_failures(lake: Lake) -> None:
    """Commit two open gaps (a Teams message, a contact) and one gap a later run closed."""
    failures = [
        failure_row(
            workload="teams",
            run_id="r-teams",
            mailbox_id=None,
            container_id=TEAM_ID,
            item_id="1700000000005",
            stage="hosted_content",
            outcome="failed",
            reason="throttled",
            detail="429 after 5 attempts",
        ),
        # Archived after it failed, so the gap is closed.
        failure_row(
            workload="teams",
            run_id="r-teams",
            mailbox_id=None,
            container_id=TEAM_ID,
            item_id="1700000000002",
            stage="message",
            outcome="failed",
            reason="throttled",
            detail="429 after 5 attempts",
        )
        | {"captured_at": T0 - T0.resolution},
        failure_row(
            workload="contacts",
            run_id="r-contacts",
            mailbox_id="mb-bob",
            container_id="contacts",
            item_id="c-unreadable",
            stage="contact",
            outcome="skipped",
            reason="invalid_json",
            detail="the contact JSON could not be parsed",
        ),
    ]
    with lake.begin(run_id="failures", kind="teams", container=None) as tx:
        tx.write_rows("failures", failures, partition={})
        tx.write_rows(
            "channel_messages",
            [channel_message(TEAM_ID, GENERAL, "1700000000007", "created", NOW)],
            partition={"team_id": TEAM_ID, "channel_id": GENERAL},
        )
        tx.commit()


def test_coverage_gaps_per_workload(seeded: Lake) -> None:
    add_failures(seeded)

    gaps = {(row["workload"], row["location"]): row for row in run_query(seeded, "coverage_gaps")}

    assert set(gaps) == {("teams", TEAM_NAME), ("contacts", "bob@contoso.example")}
    assert gaps[("teams", TEAM_NAME)]["items"] == 1
    assert gaps[("contacts", "bob@contoso.example")]["outcome"] == "skipped"


def test_items_on_hold_counts_new_workloads(seeded: Lake) -> None:
    create_case(seeded, "Matter", actor="carol", case_id="C")
    add_custodians(seeded, "C", [("mailbox", ALICE), ("team", TEAM_NAME)], actor="carol")
    hold = place_hold(seeded, "C", actor="carol")

    rows = {row["hold_id"]: row for row in run_query(seeded, "items_on_hold")}

    held = rows[hold.hold_id]
    assert held["mail_items"] == 2
    assert held["event_items"] == 2
    assert held["contact_items"] == 1
    assert held["teams_items"] == 3
    assert held["versions"] == 3 + 3 + 2 + 4


def test_custodian_volume_lists_teams(seeded: Lake) -> None:
    volumes = {(volume.kind, volume.name): volume for volume in custodian_volume(seeded)}

    assert volumes[("team", TEAM_NAME)].items == 3
    assert volumes[("team", TEAM_NAME)].bytes > 0
    assert volumes[("team", "Facilities")].items == 1
    assert volumes[("mailbox", ALICE)].items == 1

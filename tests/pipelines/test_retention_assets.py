"""Retention in Dagster: the blocking hold check runs between the plan and the purge."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from m365lake.backup import backup_mail
from m365lake.backup_teams import backup_teams
from m365lake.catalog import run_sql
from m365lake.discovery import add_custodians, create_case, place_hold, read_audit_events
from m365lake.discovery.audit_chain import check_audit_chain
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.emulator.generator_teams import generate_teams
from m365lake.lake import Lake
from m365lake.retention import PurgePlan, StoredVersion, add_policy
from pipelines import retention as retention_module
from pipelines.definitions import defs
from pipelines.deployments import resources_for
from pipelines.retention import (
    audit_trail_compaction,
    no_held_version_in_plan,
    retention_plan,
    retention_purge,
)
from pipelines.search import search_index


@pytest.fixture
def held_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Lake, str]]:
    """A lake with two mailboxes, one under a custodian hold, and a policy expiring all mail."""
    tenant = Tenant.from_seed(generate_tenant(seed=11, users=2, messages_per_user=6))
    lake = Lake.open(tmp_path / "lake", create=True)
    with EmulatorServer(tenant, tmp_path / "state") as server:
        summary = asyncio.run(backup_mail(server.settings(), lake))
        assert not summary.failed
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("M365LAKE_LAKE", str(lake.root))
        held = sorted(info.user.user_principal_name for info in tenant.users())[0]
        create_case(lake, "Matter", actor="carol", case_id="C")
        add_custodians(lake, "C", [("mailbox", held)], actor="carol")
        place_hold(lake, "C", actor="carol")
        add_policy(lake, actor="erin", name="all mail", workload="mail", action="delete", days=0)
        yield lake, held


def _mailbox_id(lake: Lake, upn: str) -> str:
    sql = f"SELECT mailbox_id FROM mailboxes WHERE user_principal_name = '{upn}'"
    return str(run_sql(lake, sql)[1][0][0])


def _message_count(lake: Lake, mailbox_id: str | None = None) -> int:
    where = f" WHERE mailbox_id = '{mailbox_id}'" if mailbox_id else ""
    return int(run_sql(lake, f"SELECT count(*) FROM messages_rows{where}")[1][0][0])


def _materialize(**kwargs: object) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [search_index, retention_plan, retention_purge, no_held_version_in_plan],
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources_for("emulator"),
        **kwargs,  # type: ignore[arg-type]
    )


def test_retention_job_in_definitions() -> None:
    repository = defs.get_repository_def()

    assert repository.has_job("retention_job")
    assert "retention_schedule" in {schedule.name for schedule in defs.schedules or []}


def test_purge_keeps_held_mailbox(held_lake: tuple[Lake, str]) -> None:
    lake, held = held_lake
    held_id = _mailbox_id(lake, held)
    held_messages = _message_count(lake, held_id)
    assert _message_count(lake) > held_messages

    outcome = _materialize()

    assert outcome.success
    checks = outcome.get_asset_check_evaluations()
    assert [check.passed for check in checks] == [True]
    assert _message_count(lake) == held_messages
    assert _message_count(lake, held_id) == held_messages


def test_held_version_in_plan_stops_purge(
    held_lake: tuple[Lake, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulates a plan that wrongly contains a held version, which the purge code is
    # built never to produce: the check must fail and the purge must not run.
    lake, _ = held_lake
    before = _message_count(lake)

    def every_version_held(_lake: Lake, plan: PurgePlan) -> dict[StoredVersion, list[str]]:
        return {stored: ["H-simulated"] for stored in plan.purge}

    monkeypatch.setattr(retention_module, "held_versions_in_plan", every_version_held)

    outcome = _materialize(raise_on_error=False)

    checks = outcome.get_asset_check_evaluations()
    assert [check.passed for check in checks] == [False]
    assert checks[0].metadata["held_versions_in_plan"].value > 0
    materialized = {
        event.asset_key.to_user_string() for event in outcome.get_asset_materialization_events()
    }
    assert "retention_purge" not in materialized
    assert _message_count(lake) == before


def test_retention_run_compacts_audit_trail(held_lake: tuple[Lake, str]) -> None:
    lake, _ = held_lake
    events_before = len(read_audit_events(lake))

    outcome = dg.materialize(
        [search_index, retention_plan, retention_purge, audit_trail_compaction],
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources_for("emulator"),
    )

    assert outcome.success
    [compaction] = [
        event
        for event in outcome.get_asset_materialization_events()
        if event.asset_key.to_user_string() == "audit_trail_compaction"
    ]
    metadata = compaction.materialization.metadata
    # The events recorded before the run and at least the purge's.
    assert metadata["events"].value >= events_before + 1
    assert check_audit_chain(lake)[1] == []
    assert [event.action for event in read_audit_events(lake)][-1] == "audit.compact"


def test_purge_keeps_held_team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = Tenant.from_seed(generate_tenant(seed=11, users=2, messages_per_user=2))
    thread = generate_teams(tenant)
    assert thread is not None
    lake = Lake.open(tmp_path / "lake", create=True)
    with EmulatorServer(tenant, tmp_path / "state") as server:
        assert not asyncio.run(backup_mail(server.settings(), lake)).failed
        assert not asyncio.run(backup_teams(server.settings(), lake)).failed
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("M365LAKE_LAKE", str(lake.root))
        create_case(lake, "Matter", actor="carol", case_id="C")
        add_custodians(lake, "C", [("team", thread.team_id)], actor="carol")
        place_hold(lake, "C", actor="carol")
        add_policy(lake, actor="erin", name="all chat", workload="teams", action="delete", days=0)
        count = "SELECT count(*) FROM channel_messages_rows"
        held_count = f"{count} WHERE team_id = '{thread.team_id}'"
        held_before = run_sql(lake, held_count)[1][0][0]
        assert run_sql(lake, count)[1][0][0] > held_before > 0

        outcome = _materialize()

    assert outcome.success
    checks = outcome.get_asset_check_evaluations()
    assert [check.passed for check in checks] == [True]
    assert run_sql(lake, held_count)[1][0][0] == held_before
    assert run_sql(lake, count)[1][0][0] == held_before

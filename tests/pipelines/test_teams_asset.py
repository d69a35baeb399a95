"""The Teams asset, sensor and schedule archive the emulated tenant's teams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from m365lake.catalog import run_sql
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.emulator.generator_teams import generate_teams
from m365lake.lake import Lake
from pipelines.definitions import defs
from pipelines.deployments import resources_for
from pipelines.teams import (
    team_directory_sensor,
    team_partitions,
    teams_archive,
    teams_backup_schedule,
)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    tenant = Tenant.from_seed(generate_tenant(seed=5, users=3, messages_per_user=1))
    generate_teams(tenant)
    with EmulatorServer(tenant, tmp_path / "state") as server:
        yield server


@pytest.fixture
def environment(emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in emulator.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("M365LAKE_LAKE", str(tmp_path / "lake"))
    return tmp_path / "lake"


def test_teams_asset_materializes(emulator: EmulatorServer, environment: Path) -> None:
    team = next(t for t in emulator.tenant.teams() if t.display_name == "Project Falcon")
    instance = dg.DagsterInstance.ephemeral()
    assert team_partitions.name is not None
    instance.add_dynamic_partitions(team_partitions.name, [team.id])

    outcome = dg.materialize(
        [teams_archive],
        partition_key=team.id,
        instance=instance,
        resources=resources_for("emulator"),
    )

    assert outcome.success
    metadata = outcome.asset_materializations_for_node("teams_archive")[0].metadata
    assert metadata["channels"].value == 2
    assert metadata["messages_new"].value == 6
    assert metadata["soft_deleted"].value == 1
    assert metadata["failures"].value == 0
    assert metadata["live_items"].value == 6
    lake = Lake.open(environment)
    assert run_sql(lake, "SELECT count(*) FROM channel_messages")[1][0][0] == 6
    assert run_sql(lake, "SELECT count(*) FROM channel_message_versions")[1][0][0] == 6
    secret = emulator.environment()["AZURE_CLIENT_SECRET"]
    assert all(secret not in str(entry.value) for entry in metadata.values())


def test_teams_asset_fails_without_protected_api(
    emulator: EmulatorServer, environment: Path
) -> None:
    emulator.tenant.app.protected_apis_approved = False
    team = emulator.tenant.teams()[0]
    instance = dg.DagsterInstance.ephemeral()
    assert team_partitions.name is not None
    instance.add_dynamic_partitions(team_partitions.name, [team.id])

    outcome = dg.materialize(
        [teams_archive],
        partition_key=team.id,
        instance=instance,
        resources=resources_for("emulator"),
        raise_on_error=False,
    )

    assert not outcome.success
    failure = next(e for e in outcome.all_events if e.event_type_value == "STEP_FAILURE")
    assert "protected API" in str(failure.event_specific_data)


def test_team_sensor_adds_every_team(emulator: EmulatorServer, environment: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    context = dg.build_sensor_context(instance=instance, resources=resources_for("emulator"))

    result = team_directory_sensor(context)

    assert isinstance(result, dg.SensorResult)
    expected = sorted(team.id for team in emulator.tenant.teams())
    assert sorted(request.partition_key for request in result.run_requests or []) == expected


def test_teams_asset_wired_into_definitions() -> None:
    repository = defs.get_repository_def()
    asset = repository.asset_graph.get(dg.AssetKey("teams_archive"))

    assert asset.group_name == "teams"
    assert teams_archive.node_def.pool == "graph"
    assert asset.partitions_def == team_partitions
    assert teams_backup_schedule.name in {schedule.name for schedule in defs.schedules or []}
    assert team_directory_sensor.name in {sensor.name for sensor in defs.sensors or []}

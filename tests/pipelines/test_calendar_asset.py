"""The calendar asset archives a mailbox's calendars from the emulated tenant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from m365lake.catalog import run_sql
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake
from pipelines.calendar import calendar_archive, calendar_backup_schedule
from pipelines.definitions import defs
from pipelines.deployments import resources_for
from pipelines.partitions import mailbox_partitions


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    tenant = Tenant.from_seed(generate_tenant(seed=5, users=2, messages_per_user=2))
    with EmulatorServer(tenant, tmp_path / "state") as server:
        yield server


def test_calendar_asset_materializes(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in emulator.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("M365LAKE_LAKE", str(tmp_path / "lake"))
    users = sorted(info.user.user_principal_name for info in emulator.tenant.users())
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(mailbox_partitions.name, users)

    outcome = dg.materialize(
        [calendar_archive],
        partition_key=users[0],
        instance=instance,
        resources=resources_for("emulator"),
    )

    assert outcome.success
    metadata = outcome.asset_materializations_for_node("calendar_archive")[0].metadata
    uid = emulator.tenant.user_id(users[0])
    singles_and_masters = len(emulator.tenant.calendar_events(uid, None))
    assert metadata["events_new"].value == singles_and_masters + 1  # one exception
    assert metadata["exceptions"].value == 1
    assert metadata["cancelled_occurrences"].value == 1
    assert metadata["failures"].value == 0
    lake = Lake.open(tmp_path / "lake")
    archived = run_sql(lake, "SELECT count(*) FROM events")[1][0][0]
    assert archived == singles_and_masters + 1
    secret = emulator.environment()["AZURE_CLIENT_SECRET"]
    assert all(secret not in str(entry.value) for entry in metadata.values())


def test_calendar_asset_in_graph_pool() -> None:
    repository = defs.get_repository_def()
    asset = repository.asset_graph.get(dg.AssetKey("calendar_archive"))

    assert asset.group_name == "calendar"
    assert calendar_archive.node_def.pool == "graph"
    assert asset.partitions_def == mailbox_partitions
    assert calendar_backup_schedule.name in {schedule.name for schedule in defs.schedules or []}

"""The contacts asset archives a mailbox's contacts from the emulated tenant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from m365lake.catalog import run_sql
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake
from pipelines.contacts import contacts_archive, contacts_backup_schedule
from pipelines.definitions import defs
from pipelines.deployments import resources_for
from pipelines.partitions import mailbox_partitions
from pipelines.sensors import mailbox_directory_sensor


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    tenant = Tenant.from_seed(generate_tenant(seed=5, users=2, messages_per_user=2))
    with EmulatorServer(tenant, tmp_path / "state") as server:
        yield server


def test_contacts_asset_materializes(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in emulator.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("M365LAKE_LAKE", str(tmp_path / "lake"))
    users = sorted(info.user.user_principal_name for info in emulator.tenant.users())
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(mailbox_partitions.name, users)

    outcome = dg.materialize(
        [contacts_archive],
        partition_key=users[0],
        instance=instance,
        resources=resources_for("emulator"),
    )

    assert outcome.success
    metadata = outcome.asset_materializations_for_node("contacts_archive")[0].metadata
    expected = len(emulator.tenant.live_contacts(users[0]))
    assert expected > 0
    assert metadata["contacts_new"].value == expected
    assert metadata["failures"].value == 0
    assert metadata["live_contacts"].value == expected
    assert metadata["contact_versions"].value == expected
    lake = Lake.open(tmp_path / "lake")
    assert run_sql(lake, "SELECT count(*) FROM contacts")[1][0][0] == expected
    secret = emulator.environment()["AZURE_CLIENT_SECRET"]
    assert all(secret not in str(entry.value) for entry in metadata.values())


def test_contacts_asset_in_graph_pool() -> None:
    repository = defs.get_repository_def()
    asset = repository.asset_graph.get(dg.AssetKey("contacts_archive"))

    assert asset.group_name == "contacts"
    assert contacts_archive.node_def.pool == "graph"
    assert asset.partitions_def == mailbox_partitions
    assert contacts_backup_schedule.name in {schedule.name for schedule in defs.schedules or []}


def test_directory_sensor_starts_contacts_backup() -> None:
    selected = mailbox_directory_sensor.asset_selection
    assert selected is not None
    repository = defs.get_repository_def()
    keys = selected.resolve(repository.asset_graph)

    assert dg.AssetKey("contacts_archive") in keys
    assert dg.AssetKey("mailbox_archive") in keys

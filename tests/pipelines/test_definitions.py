"""The Dagster code location loads, and its assets archive the emulated tenant."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from m365lake.catalog import run_sql
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake
from pipelines.assets import drive_archive, mailbox_archive
from pipelines.definitions import defs
from pipelines.deployments import resources_for
from pipelines.partitions import drive_partitions, mailbox_partitions
from pipelines.sensors import drive_directory_sensor, mailbox_directory_sensor


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    tenant = Tenant.from_seed(generate_tenant(seed=5, users=2, messages_per_user=10))
    with EmulatorServer(tenant, tmp_path / "state") as server:
        yield server


@pytest.fixture
def emulator_env(emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    lake_root = tmp_path / "lake"
    for name, value in emulator.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("M365LAKE_LAKE", str(lake_root))
    return lake_root


def test_definitions_load():
    repository = defs.get_repository_def()
    assert repository.has_implicit_global_asset_job_def()
    assert {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()} == {
        "mailbox_archive",
        "drive_archive",
        "teams_archive",
        "contacts_archive",
        "calendar_archive",
        "archive_overview",
        "search_index",
        "retention_plan",
        "retention_purge",
        "audit_trail_compaction",
    }
    for asset in repository.asset_graph.assets_defs:
        for spec in asset.specs:
            assert spec.description, f"asset {spec.key} needs a description"


def test_library_never_imports_dagster():
    probe = (
        "import sys, m365lake.backup, m365lake.cli, m365lake.catalog, m365lake.emulator, "
        "m365lake.sources.mail; print('dagster' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "False"


def test_unknown_deployment_names_the_choices():
    with pytest.raises(ValueError, match="emulator"):
        resources_for("staging")


def test_mailbox_asset_materializes_against_emulator(emulator, emulator_env: Path):
    instance = dg.DagsterInstance.ephemeral()
    users = sorted(info.user.user_principal_name for info in emulator.tenant.users())
    instance.add_dynamic_partitions(mailbox_partitions.name, users)

    outcome = dg.materialize(
        [mailbox_archive],
        partition_key=users[0],
        instance=instance,
        resources=resources_for("emulator"),
    )

    assert outcome.success
    metadata = outcome.asset_materializations_for_node("mailbox_archive")[0].metadata
    expected = len(emulator.tenant.live_messages(users[0]))
    assert metadata["messages_new"].value == expected
    lake = Lake.open(emulator_env)
    assert run_sql(lake, "SELECT count(*) FROM messages")[1][0][0] == expected
    secret = emulator.environment()["AZURE_CLIENT_SECRET"]
    assert all(secret not in str(entry.value) for entry in metadata.values())


def test_directory_sensor_adds_partitions(emulator, emulator_env: Path):
    instance = dg.DagsterInstance.ephemeral()
    context = dg.build_sensor_context(instance=instance, resources=resources_for("emulator"))

    result = mailbox_directory_sensor(context)

    users = sorted(info.user.user_principal_name for info in emulator.tenant.users())
    assert sorted(request.partition_key for request in result.run_requests) == users
    added = result.dynamic_partitions_requests[0]
    assert sorted(added.partition_keys) == users


def test_drive_asset_materializes_against_emulator(emulator, emulator_env: Path):
    tenant = emulator.tenant
    upn = sorted(info.user.user_principal_name for info in tenant.users())[0]
    drive_id = tenant.drive_id_for("onedrive", upn)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(drive_partitions.name, [drive_id])

    outcome = dg.materialize(
        [drive_archive],
        partition_key=drive_id,
        instance=instance,
        resources=resources_for("emulator"),
    )

    assert outcome.success
    metadata = outcome.asset_materializations_for_node("drive_archive")[0].metadata
    expected = len(tenant.live_files(drive_id))
    assert expected > 0
    assert metadata["failures"].value == 0
    lake = Lake.open(emulator_env)
    files = run_sql(lake, f"SELECT count(*) FROM files WHERE drive_id = '{drive_id}'")[1]
    assert files[0][0] == expected


def test_drive_sensor_adds_every_drive(emulator, emulator_env: Path):
    instance = dg.DagsterInstance.ephemeral()
    context = dg.build_sensor_context(instance=instance, resources=resources_for("emulator"))

    result = drive_directory_sensor(context)

    keys = sorted(request.partition_key for request in result.run_requests)
    upns = [info.user.user_principal_name for info in emulator.tenant.users()]
    for upn in upns:
        assert emulator.tenant.drive_id_for("onedrive", upn) in keys
    assert len(keys) > len(upns), "site libraries are partitions too"

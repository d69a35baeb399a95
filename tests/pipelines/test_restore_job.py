"""The Dagster restore job: registered, configured in the launchpad, dry run by default."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dagster as dg
import pytest

from m365lake.backup import backup_mail
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake
from pipelines.definitions import defs
from pipelines.deployments import resources_for
from pipelines.resources import GraphResource, LakeResource
from pipelines.restore import RestoreConfig, restore_job


def resources(lake_root: Path) -> dict[str, object]:
    return {
        "lake": LakeResource(location=str(lake_root)),
        "graph": GraphResource(tenant_id="tenant", client_id="client", client_secret="secret"),
    }


def test_restore_job_is_in_definitions() -> None:
    assert defs.get_job_def("restore_job").name == "restore_job"


def test_default_config_is_a_dry_run() -> None:
    assert RestoreConfig().dry_run is True
    assert RestoreConfig().conflict == "skip"


def test_empty_selection_fails_with_the_fix(tmp_path: Path) -> None:
    Lake.open(tmp_path / "lake", create=True)

    with pytest.raises(Exception, match="selects nothing"):
        restore_job.execute_in_process(resources=resources(tmp_path / "lake"))


def test_invalid_point_in_time_fails(tmp_path: Path) -> None:
    Lake.open(tmp_path / "lake", create=True)
    config = dg.RunConfig(ops={"restore_op": RestoreConfig(folder="Inbox", as_of="yesterday")})

    with pytest.raises(Exception, match="not an ISO 8601 time"):
        restore_job.execute_in_process(run_config=config, resources=resources(tmp_path / "lake"))


def test_unknown_policy_fails(tmp_path: Path) -> None:
    Lake.open(tmp_path / "lake", create=True)
    config = dg.RunConfig(ops={"restore_op": RestoreConfig(folder="Inbox", conflict="merge")})

    with pytest.raises(Exception, match="use skip, rename or replace"):
        restore_job.execute_in_process(run_config=config, resources=resources(tmp_path / "lake"))


def test_restore_job_brings_a_folder_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = Tenant.from_seed(generate_tenant(seed=13, users=1, messages_per_user=8))
    tenant.app.roles.append("Mail.ReadWrite")
    upn = tenant.users()[0].user.user_principal_name
    lake = Lake.open(tmp_path / "lake", create=True)
    with EmulatorServer(tenant, tmp_path / "state") as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        assert not asyncio.run(backup_mail(server.settings(), lake)).failed
        before = sorted(
            message.mime
            for message in tenant.live_messages(upn).values()
            if message.folder_path[:1] == ("Archive",)
        )
        user_id = tenant.user_id(upn)
        folder_paths = sorted(
            tenant.folder_path(user_id, folder.id)
            for folder in tenant.folders(user_id)
            if tenant.folder_path(user_id, folder.id)[:1] == ("Archive",)
        )
        tenant.delete_folder(upn, tenant.folder_id(upn, ("Archive",)))
        config = RestoreConfig(custodian=upn, folder="Archive", dry_run=False)

        result = restore_job.execute_in_process(
            run_config=dg.RunConfig(ops={"restore_op": config}),
            resources={
                "lake": LakeResource(location=str(lake.root)),
                "graph": resources_for("emulator")["graph"],
            },
        )

        after = sorted(
            message.mime
            for message in tenant.live_messages(upn).values()
            if message.folder_path[:1] == ("Archive",)
        )
        restored_paths = sorted(
            tenant.folder_path(user_id, folder.id)
            for folder in tenant.folders(user_id)
            if tenant.folder_path(user_id, folder.id)[:1] == ("Archive",)
        )
    [materialization] = [
        event.step_output_data.metadata
        for event in result.all_node_events
        if event.is_successful_output
    ]
    assert result.success
    assert materialization["created"].value == len(before) + len(folder_paths)
    assert restored_paths == folder_paths
    assert materialization["failed"].value == 0
    assert materialization["dry_run"].value is False
    assert len(after) == len(before)

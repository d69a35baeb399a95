"""Directory sensors over time: new users and sites get partitions, leavers keep theirs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from m365lake.catalog import run_sql
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.emulator.seed import SeedSite, SeedUser
from m365lake.lake import Lake
from pipelines.assets import mailbox_archive
from pipelines.definitions import defs
from pipelines.deployments import resources_for
from pipelines.partitions import mailbox_partitions
from pipelines.schedules import mailbox_backup_schedule
from pipelines.sensors import drive_directory_sensor, mailbox_directory_sensor

NEW_HIRE = SeedUser("new.hire@contoso.example", "New Hire", mail="new.hire@contoso.example")


@pytest.fixture
def tenant() -> Tenant:
    return Tenant.from_seed(generate_tenant(seed=17, users=2, messages_per_user=5))


@pytest.fixture
def lake_root(tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with EmulatorServer(tenant, tmp_path / "emulator") as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("M365LAKE_LAKE", str(tmp_path / "lake"))
        yield tmp_path / "lake"


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance) -> dg.SensorResult:
    """Evaluate ``sensor`` once and apply its partition changes, as the Dagster daemon does."""
    context = dg.build_sensor_context(instance=instance, resources=resources_for("emulator"))
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result


def _partition_changes(result: dg.SensorResult) -> list[tuple[str, list[str]]]:
    return [
        (type(request).__name__, sorted(request.partition_keys))
        for request in result.dynamic_partitions_requests or []
    ]


def _requested(result: dg.SensorResult) -> list[str | None]:
    return sorted(request.partition_key or "" for request in result.run_requests or [])


def _upns(tenant: Tenant) -> list[str]:
    return sorted(info.user.user_principal_name for info in tenant.users())


def _archived_per_mailbox(lake_root: Path) -> dict[str, int]:
    rows = run_sql(
        Lake.open(lake_root, create=False),
        "SELECT mailboxes.user_principal_name, count(*) FROM messages JOIN mailboxes "
        "USING (mailbox_id) GROUP BY ALL",
    )[1]
    return {str(upn): int(count) for upn, count in rows}


def test_mailbox_sensor_adds_new_hire(
    tenant: Tenant, lake_root: Path, instance: dg.DagsterInstance
) -> None:
    first = _tick(mailbox_directory_sensor, instance)
    assert _requested(first) == _upns(tenant)

    tenant.add_user(NEW_HIRE)
    second = _tick(mailbox_directory_sensor, instance)

    assert _partition_changes(second) == [
        ("AddDynamicPartitionsRequest", [NEW_HIRE.user_principal_name])
    ]
    assert _requested(second) == [NEW_HIRE.user_principal_name]
    assert mailbox_partitions.name is not None
    assert sorted(instance.get_dynamic_partitions(mailbox_partitions.name)) == _upns(tenant)


def test_quiet_directory_adds_nothing(
    tenant: Tenant, lake_root: Path, instance: dg.DagsterInstance
) -> None:
    _tick(mailbox_directory_sensor, instance)

    again = _tick(mailbox_directory_sensor, instance)

    assert _partition_changes(again) == []
    assert _requested(again) == []


def test_drive_sensor_adds_new_site_and_onedrive(
    tenant: Tenant, lake_root: Path, instance: dg.DagsterInstance
) -> None:
    _tick(drive_directory_sensor, instance)

    tenant.add_site(SeedSite("legal", "Legal", libraries=("Documents", "Contracts")))
    tenant.add_user(NEW_HIRE)
    result = _tick(drive_directory_sensor, instance)

    expected = sorted(
        [
            tenant.drive_id_for("site", "legal", "Documents"),
            tenant.drive_id_for("site", "legal", "Contracts"),
            tenant.drive_id_for("onedrive", NEW_HIRE.user_principal_name),
        ]
    )
    assert _partition_changes(result) == [("AddDynamicPartitionsRequest", expected)]
    assert _requested(result) == expected


def test_leavers_keep_partition_and_archive(
    tenant: Tenant, lake_root: Path, instance: dg.DagsterInstance
) -> None:
    _tick(mailbox_directory_sensor, instance)
    disabled, deleted = _upns(tenant)
    for user in (disabled, deleted):
        outcome = dg.materialize(
            [mailbox_archive],
            partition_key=user,
            instance=instance,
            resources=resources_for("emulator"),
        )
        assert outcome.success
    archived = _archived_per_mailbox(lake_root)
    assert archived[disabled] > 0
    assert archived[deleted] > 0

    tenant.disable_user(disabled)
    tenant.delete_user(deleted)
    result = _tick(mailbox_directory_sensor, instance)

    assert _partition_changes(result) == []
    assert _requested(result) == []
    assert mailbox_partitions.name is not None
    assert sorted(instance.get_dynamic_partitions(mailbox_partitions.name)) == [disabled, deleted]
    assert _archived_per_mailbox(lake_root) == archived

    # The deleted user's backup is skipped as a leaver and leaves the archive as it was.
    # Blocking sign-in leaves the disabled user's mailbox in place, so its backup goes on.
    deleted_backup = dg.materialize(
        [mailbox_archive],
        partition_key=deleted,
        instance=instance,
        resources=resources_for("emulator"),
    )
    [skipped] = deleted_backup.asset_materializations_for_node("mailbox_archive")
    assert "no longer in the directory" in str(skipped.metadata["skipped"].value)
    assert dg.materialize(
        [mailbox_archive],
        partition_key=disabled,
        instance=instance,
        resources=resources_for("emulator"),
    ).success
    assert _archived_per_mailbox(lake_root) == archived


def test_schedule_still_requests_leavers(
    tenant: Tenant, lake_root: Path, instance: dg.DagsterInstance
) -> None:
    _tick(mailbox_directory_sensor, instance)
    users = _upns(tenant)
    tenant.delete_user(users[0])
    _tick(mailbox_directory_sensor, instance)

    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=dt.datetime(2026, 12, 4, 11, 0, tzinfo=dt.UTC),
        repository_def=defs.get_repository_def(),
    )

    requests = mailbox_backup_schedule.evaluate_tick(context).run_requests

    assert requests is not None
    assert sorted(request.partition_key or "" for request in requests) == users

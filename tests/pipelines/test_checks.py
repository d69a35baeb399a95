"""Asset checks: source counts, failure rates, and the integrity check before a purge."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake
from pipelines.assets import drive_archive, mailbox_archive
from pipelines.checks import (
    drive_count_matches_source,
    drive_failures_below_threshold,
    lake_integrity,
    mailbox_count_matches_source,
    mailbox_failures_below_threshold,
)
from pipelines.definitions import defs
from pipelines.deployments import resources_for
from pipelines.partitions import drive_partitions, mailbox_partitions
from pipelines.retention import retention_plan, retention_purge
from pipelines.search import search_index


@pytest.fixture
def tenant() -> Tenant:
    return Tenant.from_seed(generate_tenant(seed=13, users=1, messages_per_user=8))


@pytest.fixture
def served(
    tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[EmulatorServer, Path]]:
    with EmulatorServer(tenant, tmp_path / "state") as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("M365LAKE_LAKE", str(tmp_path / "lake"))
        yield server, tmp_path / "lake"


def _back_up(instance: dg.DagsterInstance, user: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [mailbox_archive, mailbox_count_matches_source, mailbox_failures_below_threshold],
        partition_key=user,
        instance=instance,
        resources=resources_for("emulator"),
    )


def _evaluations(outcome: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {check.check_name: check for check in outcome.get_asset_check_evaluations()}


def test_checks_in_definitions() -> None:
    keys = {key.name for key in defs.get_repository_def().asset_graph.asset_check_keys}

    assert {
        "mailbox_count_matches_source",
        "drive_count_matches_source",
        "mailbox_failures_below_threshold",
        "drive_failures_below_threshold",
        "lake_integrity",
        "no_held_version_in_plan",
    } <= keys


def test_backup_checks_pass_then_count_warns(
    tenant: Tenant, served: tuple[EmulatorServer, Path]
) -> None:
    user = tenant.users()[0].user.user_principal_name
    instance = dg.DagsterInstance.ephemeral()
    assert mailbox_partitions.name is not None
    instance.add_dynamic_partitions(mailbox_partitions.name, [user])

    first = _evaluations(_back_up(instance, user))

    assert first["mailbox_count_matches_source"].passed
    assert first["mailbox_count_matches_source"].metadata["folders_differing"].value == 0
    assert first["mailbox_failures_below_threshold"].passed

    # A new message whose MIME download fails (HTTP 400, not retried) is recorded in
    # failures, so the folder is one message short of Exchange's count.
    server = served[0]
    tenant.add_message(user, ("Inbox",), b"From: a@contoso.example\r\nSubject: late\r\n\r\nx\r\n")
    server.inject(path_pattern=r"/messages/[^/]+/\$value$", status=400, code="ErrorInvalidRequest")

    second = _evaluations(_back_up(instance, user))

    count = second["mailbox_count_matches_source"]
    failures = second["mailbox_failures_below_threshold"]
    assert not count.passed
    assert count.severity == dg.AssetCheckSeverity.WARN
    assert count.metadata["folders_differing"].value == 1
    assert not failures.passed
    assert failures.metadata["items_failed"].value == 1


def _back_up_drive(instance: dg.DagsterInstance, drive_id: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [drive_archive, drive_count_matches_source, drive_failures_below_threshold],
        partition_key=drive_id,
        instance=instance,
        resources=resources_for("emulator"),
    )


def test_drive_count_passes_then_warns(tenant: Tenant, served: tuple[EmulatorServer, Path]) -> None:
    user = tenant.users()[0].user.user_principal_name
    drive_id = tenant.drive_id_for("onedrive", user)
    instance = dg.DagsterInstance.ephemeral()
    assert drive_partitions.name is not None
    instance.add_dynamic_partitions(drive_partitions.name, [drive_id])
    tenant.add_package("onedrive", user, "Documents", ("Notebook",))

    first = _evaluations(_back_up_drive(instance, drive_id))["drive_count_matches_source"]

    files = len(tenant.live_files(drive_id))
    assert first.passed
    assert first.metadata["source_files"].value == files
    assert first.metadata["archived_files"].value == files
    assert first.metadata["source_basis"].value == "quota.fileCount"

    # A new file whose download fails is recorded in failures, not archived, so the
    # archive is one file short of Graph's count.
    tenant.add_file("onedrive", user, "Documents", ("late.txt",), b"late")
    served[0].inject(path_pattern=r"/_download/", status=400, times=10)

    second = _evaluations(_back_up_drive(instance, drive_id))["drive_count_matches_source"]

    assert not second.passed
    assert second.severity == dg.AssetCheckSeverity.WARN
    assert second.metadata["source_files"].value == files + 1
    assert second.metadata["difference"].value == 1


def test_damaged_lake_stops_purge(tenant: Tenant, served: tuple[EmulatorServer, Path]) -> None:
    user = tenant.users()[0].user.user_principal_name
    instance = dg.DagsterInstance.ephemeral()
    assert mailbox_partitions.name is not None
    instance.add_dynamic_partitions(mailbox_partitions.name, [user])
    assert _back_up(instance, user).success
    lake = Lake.open(served[1], create=False)
    # A damaged blob: planning a purge reads only table rows, so without the check the
    # purge would go ahead on a lake that fails verification.
    digest = lake.blobs.put(b"attachment content " * 100_000)
    damaged = served[1] / lake.blobs.relative_path(digest)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))

    outcome = dg.materialize(
        [search_index, retention_plan, retention_purge, lake_integrity],
        instance=instance,
        resources=resources_for("emulator"),
        raise_on_error=False,
    )

    integrity = _evaluations(outcome)["lake_integrity"]
    assert not integrity.passed
    materialized = {
        event.asset_key.to_user_string() for event in outcome.get_asset_materialization_events()
    }
    assert "retention_purge" not in materialized

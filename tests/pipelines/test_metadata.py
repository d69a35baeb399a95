"""Materialization metadata of the backup assets and the archive overview, on a demo run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from m365lake.archive_stats import format_bytes, markdown_bars
from m365lake.catalog import run_sql
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake
from pipelines.assets import drive_archive, mailbox_archive
from pipelines.deployments import resources_for
from pipelines.overview import archive_overview
from pipelines.partitions import drive_partitions, mailbox_partitions

BACKUP_KEYS = {
    "run_id",
    "failures",
    "bytes_downloaded",
    "graph_requests",
    "throttled_responses",
    "throttle_wait_seconds",
    "live_items",
    "live_bytes",
    "versions",
    "version_bytes",
    "delta_token_age_seconds",
    "archive_growth",
}


@pytest.fixture
def tenant() -> Tenant:
    return Tenant.from_seed(generate_tenant(seed=21, users=2, messages_per_user=6))


@pytest.fixture
def lake_path(tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with EmulatorServer(tenant, tmp_path / "state") as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("M365LAKE_LAKE", str(tmp_path / "lake"))
        yield tmp_path / "lake"


def _metadata(outcome: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    [event] = [
        event
        for event in outcome.get_asset_materialization_events()
        if event.asset_key.to_user_string() == asset
    ]
    materialization = event.materialization
    return {key: value.value for key, value in materialization.metadata.items()}


def _materialize(
    instance: dg.DagsterInstance, asset: dg.AssetsDefinition, key: str
) -> dict[str, Any]:
    outcome = dg.materialize(
        [asset], partition_key=key, instance=instance, resources=resources_for("emulator")
    )
    return _metadata(outcome, asset.key.to_user_string())


def test_mailbox_metadata_over_two_runs(tenant: Tenant, lake_path: Path) -> None:
    user = tenant.users()[0].user.user_principal_name
    instance = dg.DagsterInstance.ephemeral()
    assert mailbox_partitions.name is not None
    instance.add_dynamic_partitions(mailbox_partitions.name, [user])
    live = len(tenant.live_messages(user))

    first = _materialize(instance, mailbox_archive, user)

    assert set(first) >= BACKUP_KEYS
    assert first["messages_new"] == live
    assert first["live_items"] == first["versions"] == live
    assert first["live_bytes"] == first["version_bytes"] > 0
    assert first["delta_token_age_seconds"] is None
    assert first["throttle_wait_seconds"] == 0.0
    assert datetime.now(UTC).date().isoformat() in first["archive_growth"]

    tenant.delete_message(user, sorted(tenant.live_messages(user))[0])
    second = _materialize(instance, mailbox_archive, user)

    assert second["messages_deleted"] == 1
    assert second["live_items"] == live - 1
    assert second["versions"] == live
    assert second["delta_token_age_seconds"] > 0
    lake = Lake.open(lake_path, create=False)
    [(finished,)] = run_sql(
        lake,
        f"SELECT finished_at FROM runs WHERE run_id = '{first['run_id']}'",
    )[1]
    [(started,)] = run_sql(
        lake,
        f"SELECT started_at FROM runs WHERE run_id = '{second['run_id']}'",
    )[1]
    assert second["delta_token_age_seconds"] == pytest.approx((started - finished).total_seconds())


def test_drive_metadata_and_overview(tenant: Tenant, lake_path: Path) -> None:
    user = tenant.users()[0].user.user_principal_name
    drive_id = tenant.drive_id_for("onedrive", user)
    instance = dg.DagsterInstance.ephemeral()
    assert drive_partitions.name is not None
    instance.add_dynamic_partitions(drive_partitions.name, [drive_id])
    files = tenant.live_files(drive_id)

    metadata = _materialize(instance, drive_archive, drive_id)

    assert set(metadata) >= BACKUP_KEYS
    assert metadata["items_new"] >= len(files)
    assert metadata["live_items"] == len(files)
    assert metadata["live_bytes"] == sum(len(content) for _, content, _ in files.values())
    assert metadata["delta_token_age_seconds"] is None

    overview = _metadata(
        dg.materialize([archive_overview], instance=instance, resources=resources_for("emulator")),
        "archive_overview",
    )

    assert overview["live_items"] == len(files)
    assert overview["custodians"] == 1
    assert overview["days_with_backups"] == 1
    assert overview["version_bytes"] == metadata["version_bytes"]
    assert f"onedrive: {user}" in overview["custodian_volume"]
    assert datetime.now(UTC).date().isoformat() in overview["archive_growth"]
    assert f"| files | 1 | {len(files):,} | 0 |" in overview["workloads"]
    assert "| teams | 0 | 0 | 0 | 0 |" in overview["workloads"]
    assert overview["open_coverage_gaps"] == 0


def test_markdown_bars_scale_to_largest() -> None:
    table = markdown_bars([("a", 2048), ("b", 1024), ("c", 0)], label="x", value="y", width=4)

    lines = table.splitlines()
    assert lines[0] == "| x | y | |"
    assert lines[2] == "| a | 2.0 KiB | ████ |"
    assert lines[3] == "| b | 1.0 KiB | ██ |"
    assert lines[4] == "| c | 0 B |  |"


def test_markdown_bars_without_rows() -> None:
    assert markdown_bars([], label="x", value="y") == "no data"


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024**3, "5.0 GiB")],
)
def test_format_bytes(count: int, text: str) -> None:
    assert format_bytes(count) == text

"""The search_index Dagster asset updates the index after the archive assets run."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from m365lake.emulator import EmulatorServer
from m365lake.lake import Lake
from m365lake.search.hits import search
from pipelines.assets import mailbox_archive
from pipelines.deployments import resources_for
from pipelines.partitions import mailbox_partitions
from pipelines.search import search_index


@pytest.fixture
def emulator_env(emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    lake_root = tmp_path / "lake"
    for name, value in emulator.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("M365LAKE_LAKE", str(lake_root))
    return lake_root


def materialize(
    asset: dg.AssetsDefinition, instance: dg.DagsterInstance, partition: str | None = None
) -> dict[str, dg.MetadataValue]:
    outcome = dg.materialize(
        [asset], partition_key=partition, instance=instance, resources=resources_for("emulator")
    )
    assert outcome.success
    key = asset.key.to_user_string()
    return dict(outcome.asset_materializations_for_node(key)[0].metadata)


def test_search_index_asset_is_incremental(emulator: EmulatorServer, emulator_env: Path):
    tenant = emulator.tenant
    users = sorted(info.user.user_principal_name for info in tenant.users() if info.has_mailbox)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(mailbox_partitions.name, users)
    materialize(mailbox_archive, instance, users[0])

    first = materialize(search_index, instance)
    tenant.add_message(users[0], ("Inbox",), b"Subject: okapi sighting\r\n\r\nan okapi\r\n")
    materialize(mailbox_archive, instance, users[0])
    second = materialize(search_index, instance)

    expected = len(tenant.live_messages(users[0])) - 1
    assert first["documents_added"].value == expected
    assert first["rebuilt"].value is True
    assert second["documents_added"].value == 1
    assert second["rebuilt"].value is False
    assert second["documents_total"].value == expected + 1
    assert second["index_bytes"].value > 0
    assert second["partially_indexed_total"].value == (
        first["partially_indexed"].value + second["partially_indexed"].value
    )
    result = search(Lake.open(emulator_env, create=False), "okapi")
    assert result.total == 1
    assert result.commits_behind == 0

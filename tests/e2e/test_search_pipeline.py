"""The search_index Dagster asset updates the index after the archive assets run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from m365lake.emulator import EmulatorServer
from m365lake.lake import Lake
from m365lake.search.hits import search
from pipelines.assets import mailbox_archive
from pipelines.definitions import defs
from pipelines.deployments import resources_for
from pipelines.partitions import mailbox_partitions
from pipelines.search import (
    SEARCH_INDEX_CRON,
    SEARCH_INDEX_OPTIMIZE_CRON,
    search_index,
    search_index_optimize_job,
    search_index_schedule,
)


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


def test_search_schedules_in_definitions():
    repository = defs.get_repository_def()
    schedules = {schedule.name: schedule for schedule in repository.schedule_defs}

    hourly = schedules["search_index_schedule"]
    daily = schedules["search_index_optimize_schedule"]

    assert hourly.cron_schedule == SEARCH_INDEX_CRON == "40 * * * *"
    assert hourly.default_status == dg.DefaultScheduleStatus.RUNNING
    assert hourly.job_name == "search_index_job"
    assert repository.get_job("search_index_job").asset_layer.selected_asset_keys == {
        search_index.key
    }
    assert daily.cron_schedule == SEARCH_INDEX_OPTIMIZE_CRON
    assert daily.default_status == dg.DefaultScheduleStatus.RUNNING
    assert daily.job_name == "search_index_optimize_job"
    assert repository.has_job("search_index_optimize_job")


def test_index_schedule_requests_update_run():
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 12, 4, 10, 40, tzinfo=dt.UTC)
    )

    requests = search_index_schedule.evaluate_tick(context).run_requests

    assert requests is not None
    assert len(requests) == 1


def test_optimize_job_merges_index(emulator: EmulatorServer, emulator_env: Path):
    tenant = emulator.tenant
    users = sorted(info.user.user_principal_name for info in tenant.users() if info.has_mailbox)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(mailbox_partitions.name, users)
    materialize(mailbox_archive, instance, users[0])
    indexed = materialize(search_index, instance)
    archive = Lake.open(emulator_env, create=False)
    before = {hit.doc_id for hit in search(archive, "kind:email", limit=1000).hits}

    outcome = search_index_optimize_job.execute_in_process(
        instance=instance, resources=resources_for("emulator")
    )

    assert outcome.success
    [observation] = [
        event.event_specific_data.asset_observation  # type: ignore[union-attr]
        for event in outcome.all_events
        if event.event_type_value == "ASSET_OBSERVATION"
    ]
    assert observation.asset_key == search_index.key
    metadata = observation.metadata
    assert metadata["documents"].value == indexed["documents_total"].value
    assert metadata["segments_after"].value <= metadata["segments_before"].value
    assert {hit.doc_id for hit in search(archive, "kind:email", limit=1000).hits} == before

"""Backup schedules: one run per known partition per tick, cron taken from the environment."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pytest

from pipelines.definitions import defs
from pipelines.partitions import drive_partitions, mailbox_partitions
from pipelines.schedules import (
    DEFAULT_BACKUP_CRON,
    backup_cron,
    drive_backup_schedule,
    mailbox_backup_schedule,
)

_TICK = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    # A schedule context needs an instance reference, which an ephemeral instance lacks.
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _context(instance: dg.DagsterInstance) -> dg.ScheduleEvaluationContext:
    return dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=_TICK,
        repository_def=defs.get_repository_def(),
    )


def test_schedules_in_definitions() -> None:
    names = {schedule.name for schedule in defs.schedules or []}

    assert {"mailbox_backup_schedule", "drive_backup_schedule"} <= names


def test_mailbox_schedule_requests_every_partition(instance: dg.DagsterInstance) -> None:
    assert mailbox_partitions.name is not None
    instance.add_dynamic_partitions(mailbox_partitions.name, ["a@x.example", "b@x.example"])

    requests = mailbox_backup_schedule.evaluate_tick(_context(instance)).run_requests

    assert requests is not None
    assert sorted(request.partition_key for request in requests) == ["a@x.example", "b@x.example"]
    run_keys = {request.run_key for request in requests}
    assert len(run_keys) == 2
    assert all(key is not None and key.startswith(_TICK.isoformat()) for key in run_keys)


def test_drive_schedule_requests_every_partition(instance: dg.DagsterInstance) -> None:
    assert drive_partitions.name is not None
    instance.add_dynamic_partitions(drive_partitions.name, ["b!drive1"])

    requests = drive_backup_schedule.evaluate_tick(_context(instance)).run_requests

    assert requests is not None
    assert [request.partition_key for request in requests] == ["b!drive1"]


def test_schedule_skips_without_partitions(instance: dg.DagsterInstance) -> None:
    result = mailbox_backup_schedule.evaluate_tick(_context(instance))

    assert not result.run_requests
    assert result.skip_message is not None
    assert "daemon" in result.skip_message


def test_backup_cron_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("M365LAKE_BACKUP_CRON", raising=False)
    assert backup_cron() == DEFAULT_BACKUP_CRON

    monkeypatch.setenv("M365LAKE_BACKUP_CRON", "*/15 * * * *")
    assert backup_cron() == "*/15 * * * *"


def test_invalid_backup_cron_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M365LAKE_BACKUP_CRON", "every hour")

    with pytest.raises(ValueError, match="M365LAKE_BACKUP_CRON"):
        backup_cron()

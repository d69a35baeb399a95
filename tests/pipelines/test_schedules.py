"""Backup schedules: one run per known partition per tick, cron taken from the environment."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from pipelines.cron import cron_from_env
from pipelines.definitions import defs
from pipelines.overview import OVERVIEW_CRON
from pipelines.partitions import drive_partitions, mailbox_partitions
from pipelines.retention import RETENTION_CRON
from pipelines.schedules import (
    DEFAULT_BACKUP_CRON,
    backup_cron,
    drive_backup_schedule,
    mailbox_backup_schedule,
)
from pipelines.search import SEARCH_INDEX_CRON, SEARCH_INDEX_OPTIMIZE_CRON

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


# Every schedule in the code location and the variable that sets its cron expression.
SCHEDULE_CRON_VARIABLES = {
    "mailbox_backup_schedule": "M365LAKE_BACKUP_CRON",
    "drive_backup_schedule": "M365LAKE_BACKUP_CRON",
    "contacts_backup_schedule": "M365LAKE_BACKUP_CRON",
    "teams_backup_schedule": "M365LAKE_BACKUP_CRON",
    "calendar_backup_schedule": "M365LAKE_BACKUP_CRON",
    "search_index_schedule": "M365LAKE_SEARCH_INDEX_CRON",
    "search_index_optimize_schedule": "M365LAKE_SEARCH_OPTIMIZE_CRON",
    "retention_schedule": "M365LAKE_RETENTION_CRON",
    "archive_overview_schedule": "M365LAKE_OVERVIEW_CRON",
}
_OVERRIDES = {
    "M365LAKE_BACKUP_CRON": "*/20 * * * *",
    "M365LAKE_SEARCH_INDEX_CRON": "50 * * * *",
    "M365LAKE_SEARCH_OPTIMIZE_CRON": "15 5 * * 0",
    "M365LAKE_RETENTION_CRON": "0 3 * * 6",
    "M365LAKE_OVERVIEW_CRON": "30 7 * * *",
}
_PRINT_CRONS = (
    "import json; from pipelines.definitions import defs; "
    "print(json.dumps({s.name: s.cron_schedule for s in defs.schedules}))"
)


def _crons_loaded_with(environment: dict[str, str]) -> dict[str, str]:
    """Load the code location in a fresh interpreter, as Dagster does, and return its crons."""
    clean = {name: value for name, value in os.environ.items() if name not in _OVERRIDES}
    output = subprocess.run(
        [sys.executable, "-c", _PRINT_CRONS],
        env={**clean, **environment},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=False,
    )
    assert output.returncode == 0, output.stderr[-3000:]
    crons: dict[str, str] = json.loads(output.stdout.strip().splitlines()[-1])
    return crons


def test_every_schedule_has_cron_variable() -> None:
    assert {schedule.name for schedule in defs.schedules or []} == set(SCHEDULE_CRON_VARIABLES)


def test_every_schedule_cron_configurable() -> None:
    crons = _crons_loaded_with(_OVERRIDES)

    for schedule, variable in SCHEDULE_CRON_VARIABLES.items():
        assert crons[schedule] == _OVERRIDES[variable], schedule


def test_schedule_crons_default_when_unset() -> None:
    crons = _crons_loaded_with({})

    assert crons == {
        "mailbox_backup_schedule": DEFAULT_BACKUP_CRON,
        "drive_backup_schedule": DEFAULT_BACKUP_CRON,
        "contacts_backup_schedule": DEFAULT_BACKUP_CRON,
        "teams_backup_schedule": DEFAULT_BACKUP_CRON,
        "calendar_backup_schedule": DEFAULT_BACKUP_CRON,
        "search_index_schedule": SEARCH_INDEX_CRON,
        "search_index_optimize_schedule": SEARCH_INDEX_OPTIMIZE_CRON,
        "retention_schedule": RETENTION_CRON,
        "archive_overview_schedule": OVERVIEW_CRON,
    }


@pytest.mark.parametrize("variable", sorted(_OVERRIDES))
def test_malformed_cron_names_variable(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "every hour")

    with pytest.raises(ValueError, match=variable):
        cron_from_env(variable, "0 * * * *")


def test_invalid_cron_field_stops_loading() -> None:
    output = subprocess.run(
        [sys.executable, "-c", _PRINT_CRONS],
        env={**os.environ, "M365LAKE_RETENTION_CRON": "99 2 * * *"},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=False,
    )

    assert output.returncode != 0
    assert "99 2 * * *" in output.stderr

"""``m365lake restore`` rejects bad input with messages that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from m365lake.cli import main
from m365lake.lake import Lake
from m365lake.restore.cli import _echo_table
from m365lake.restore.model import (
    ConflictPolicy,
    ItemResult,
    Outcome,
    PlannedItem,
    RestoreReport,
    RestoreTarget,
)
from m365lake.restore.runner import RestoreRun
from m365lake.restore.selection import Selection


@pytest.fixture
def lake_path(tmp_path: Path) -> str:
    Lake.open(tmp_path / "lake", create=True)
    return str(tmp_path / "lake")


def invoke(*arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["restore", *arguments])
    return result.exit_code, result.output


def test_empty_selection_is_rejected(lake_path: str) -> None:
    code, output = invoke("--lake", lake_path)

    assert code == 1
    assert "selects nothing" in output


def test_time_without_zone_is_rejected(lake_path: str) -> None:
    code, output = invoke("--lake", lake_path, "--folder", "Inbox", "--as-of", "2026-11-30T17:00")

    assert code == 2
    assert "no time zone" in output


def test_time_in_other_format_is_rejected(lake_path: str) -> None:
    code, output = invoke("--lake", lake_path, "--folder", "Inbox", "--as-of", "last tuesday")

    assert code == 2
    assert "not an ISO 8601 time" in output


def test_sharepoint_invalid_folder_name_is_rejected(lake_path: str) -> None:
    code, output = invoke("--lake", lake_path, "--folder", "Inbox", "--restore-folder", "a:b")

    assert code == 2
    assert "':'" in output


def test_folder_and_path_together_are_rejected(lake_path: str) -> None:
    code, output = invoke("--lake", lake_path, "--folder", "Inbox", "--path", "/Documents")

    assert code == 1
    assert "Run two restores instead" in output


def test_missing_lake_names_the_fix(tmp_path: Path) -> None:
    code, output = invoke("--lake", str(tmp_path / "none"), "--folder", "Inbox")

    assert code == 1
    assert "m365lake backup" in output


def _run(*, dry_run: bool) -> RestoreRun:
    planned = PlannedItem(
        workload="calendar",
        source_container="mb-1",
        source_item_id="e-1",
        source_version="a" * 64,
        source_path="Calendar/Budget review",
        target_container="mb-1",
        target_path="Calendar/Budget review",
        action="create",
    )
    report = RestoreReport("restore-1", dry_run, ConflictPolicy.SKIP)
    report.items.append(ItemResult(planned, Outcome.CREATED))
    return RestoreRun(report, Selection(item_ids=("e-1",)), RestoreTarget())


def test_dry_run_table_says_would_create(capsys: pytest.CaptureFixture[str]) -> None:
    _echo_table(_run(dry_run=True), limit=10)

    output = capsys.readouterr().out
    assert "would create" in output
    assert "restore restore-1 planned: 1 would create" in output


def test_executed_table_says_created(capsys: pytest.CaptureFixture[str]) -> None:
    _echo_table(_run(dry_run=False), limit=10)

    output = capsys.readouterr().out
    assert "would" not in output
    assert "restore restore-1 restored: 1 created" in output

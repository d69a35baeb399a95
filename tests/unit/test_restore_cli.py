"""``m365lake restore`` rejects bad input with messages that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from m365lake.cli import main
from m365lake.lake import Lake


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

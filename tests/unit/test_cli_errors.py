"""Errors of the m365lake command that need no emulator: options, lake paths, permissions."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from m365lake import backup as backup_module
from m365lake.cli import main
from m365lake.lake import Lake

TENANT = {"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s"}


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    # The command configures logging for the whole process (root handler, httpx level),
    # which would change what later tests in this process capture.
    root = logging.getLogger()
    httpx_logger = logging.getLogger("httpx")
    saved = (root.level, list(root.handlers), httpx_logger.level)
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    httpx_logger.setLevel(saved[2])


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env)


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_mailbox_is_usage_error(tmp_path: Path, value: str) -> None:
    result = run("backup", "--mailbox", value, "--lake", str(tmp_path / "lake"), env=TENANT)

    assert result.exit_code == 2
    assert "--mailbox needs a user principal name or object id" in result.output
    assert not isinstance(result.exception, KeyError)
    assert not (tmp_path / "lake").exists()


def test_backup_into_unwritable_lake_fails_before_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Lake.open(tmp_path / "lake")
    downloads = []

    async def fake_backup(*args: object, **kwargs: object) -> None:
        downloads.append(args)

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(backup_module, "backup_mail", fake_backup)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", denied)

    result = run("backup", "--lake", str(tmp_path / "lake"), env=TENANT)

    assert result.exit_code == 1
    assert downloads == []
    assert "not writable" in result.output
    assert str(tmp_path / "lake") in result.output
    assert "Traceback" not in result.output


def test_backup_into_uncreatable_lake_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")

    result = run("backup", "--lake", str(blocker / "lake"), env=TENANT)

    assert result.exit_code == 1
    assert "could not create a lake" in result.output
    assert str(blocker / "lake") in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_os_error_during_sql_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from m365lake import catalog

    Lake.open(tmp_path / "lake")

    def failing(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(catalog, "run_sql", failing)

    result = run("sql", "--lake", str(tmp_path / "lake"), "SELECT 1")

    assert result.exit_code == 1
    assert "No space left on device" in result.output
    assert str(tmp_path / "lake") in result.output
    assert not isinstance(result.exception, OSError)


@pytest.mark.parametrize(
    ("workload", "flag", "applies"),
    [
        ("teams", "--mailbox", "--workload mail, --workload calendar"),
        ("mail", "--team", "--workload teams, --workload all"),
        ("calendar", "--drive", "--workload files, --workload all"),
    ],
)
def test_flag_of_other_workload_rejected(
    tmp_path: Path, workload: str, flag: str, applies: str
) -> None:
    lake = tmp_path / "lake"
    result = run("backup", "--workload", workload, flag, "x", "--lake", str(lake), env=TENANT)

    assert result.exit_code == 2
    assert f"{flag} does not apply to --workload {workload}" in result.output
    assert applies in result.output
    assert not lake.exists()


def test_mailbox_accepted_for_calendar(tmp_path: Path) -> None:
    # Without tenant settings the command stops right after checking its options.
    no_tenant = {name: "" for name in TENANT}
    result = run("backup", "--workload", "calendar", "--mailbox", "x", env=no_tenant)

    assert "does not apply" not in result.output
    assert "missing tenant settings" in result.output

"""``m365lake restore`` end to end: back up, lose a folder and a file, plan, restore, rerun."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from m365lake.emulator import EmulatorServer, Tenant
from tests.e2e.test_cli import m365lake


@pytest.fixture
def emulator_env(emulator: EmulatorServer, tenant: Tenant, tmp_path: Path) -> dict[str, str]:
    # A restore writes, so the app registration needs the write permissions a backup
    # does without.
    tenant.app.roles.extend(["Mail.ReadWrite", "Files.ReadWrite.All"])
    return {
        **emulator.environment(),
        "M365LAKE_LAKE": str(tmp_path / "restore-lake"),
        "M365LAKE_ACTOR": "restore-officer",
    }


def archive_subjects(tenant: Tenant, upn: str, top: str) -> list[tuple[tuple[str, ...], bytes]]:
    """Return (folder path, Subject header line) of every live message under ``top``."""
    found = []
    for message in tenant.live_messages(upn).values():
        if message.folder_path[:1] == (top,):
            header = next(
                (
                    line
                    for line in message.mime.split(b"\r\n")
                    if line.lower().startswith(b"subject:")
                ),
                b"",
            )
            found.append((message.folder_path, header))
    return sorted(found)


def run_json(*args: str, env: dict[str, str]) -> dict[str, object]:
    result = m365lake("restore", *args, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    document: dict[str, object] = json.loads(result.stdout)
    return document


def test_restore_folder_and_file_as_of_before_loss(
    emulator_env: dict[str, str], tenant: Tenant
) -> None:
    upn = tenant.users()[0].user.user_principal_name
    drive_id = tenant.drive_id_for("onedrive", upn)
    before_mail = archive_subjects(tenant, upn, "Archive")
    lost_file_id, (lost_path, lost_content, _) = next(
        iter(sorted(tenant.live_files(drive_id).items()))
    )
    assert before_mail, "the generated mailbox has an Archive folder tree"
    assert m365lake("backup", env=emulator_env).returncode == 0

    user_id = tenant.user_id(upn)
    folders = {
        tenant.folder_path(user_id, folder.id)
        for folder in tenant.folders(user_id)
        if tenant.folder_path(user_id, folder.id)[:1] == ("Archive",)
    }
    time.sleep(0.01)
    before_loss = datetime.now(UTC).isoformat()
    tenant.delete_folder(upn, tenant.folder_id(upn, ("Archive",)))
    tenant.delete_item(lost_file_id)
    assert m365lake("backup", env=emulator_env).returncode == 0
    assert archive_subjects(tenant, upn, "Archive") == []

    selection = ["--custodian", upn, "--folder", "Archive", "--as-of", before_loss]
    plan = run_json(*selection, env=emulator_env)

    assert plan["dry_run"] is True
    counts = plan["counts"]
    assert isinstance(counts, dict)
    assert counts["created"] == len(before_mail) + len(folders)
    assert archive_subjects(tenant, upn, "Archive") == []

    done = run_json(*selection, "--execute", env=emulator_env)

    assert done["dry_run"] is False
    assert done["counts"] == {**counts}
    assert archive_subjects(tenant, upn, "Archive") == before_mail
    assert [finding for finding in done["verification"] if finding["severity"] != "rewrite"] == []

    again = run_json(*selection, "--execute", env=emulator_env)

    again_counts = again["counts"]
    assert isinstance(again_counts, dict)
    assert again_counts["created"] == 0
    assert again_counts["already_present"] == counts["created"]
    assert archive_subjects(tenant, upn, "Archive") == before_mail

    file_selection = [
        "--custodian",
        upn,
        "--path",
        "/" + "/".join(lost_path),
        "--as-of",
        before_loss,
    ]
    restored_file = run_json(*file_selection, "--execute", env=emulator_env)

    assert restored_file["counts"]["created"] == 1  # type: ignore[index]
    contents = {path: content for path, content, _ in tenant.live_files(drive_id).values()}
    assert contents[lost_path] == lost_content

    audit = m365lake(
        "sql",
        "--format",
        "json",
        "SELECT action, actor FROM audit_events WHERE action LIKE 'restore%' ORDER BY seq",
        env=emulator_env,
    )
    assert json.loads(audit.stdout) == [
        {"action": "restore.plan", "actor": "restore-officer"},
        {"action": "restore", "actor": "restore-officer"},
        {"action": "restore", "actor": "restore-officer"},
        {"action": "restore", "actor": "restore-officer"},
    ]


def test_restore_plan_lists_collisions_and_changes_nothing(
    emulator_env: dict[str, str], tenant: Tenant
) -> None:
    upn = tenant.users()[0].user.user_principal_name
    assert m365lake("backup", env=emulator_env).returncode == 0
    before = tenant.live_messages(upn)

    result = m365lake("restore", "--custodian", upn, "--folder", "Inbox", env=emulator_env)

    assert result.returncode == 0, result.stderr
    assert "dry run: nothing was written" in result.stdout
    assert "already_present" in result.stdout
    assert tenant.live_messages(upn).keys() == before.keys()


def test_restore_without_write_permission_names_it(
    emulator: EmulatorServer, tenant: Tenant, tmp_path: Path
) -> None:
    env = {**emulator.environment(), "M365LAKE_LAKE": str(tmp_path / "read-only-app")}
    upn = tenant.users()[0].user.user_principal_name
    assert m365lake("backup", env=env).returncode == 0
    tenant.delete_folder(upn, tenant.folder_id(upn, ("Archive",)))

    result = m365lake("restore", "--custodian", upn, "--folder", "Archive", "--execute", env=env)

    assert result.returncode == 1
    assert "Mail.ReadWrite application permission" in result.stderr
    assert "failed" in result.stdout.splitlines()[-1]

"""The m365lake command as a terminal user runs it, against the emulator."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from m365lake.backup import backup_mail
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.certs import create_client_certificate
from m365lake.lake import Lake


def m365lake(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "m365lake", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def emulator_env(emulator: EmulatorServer, tmp_path: Path) -> dict[str, str]:
    return {**emulator.environment(), "M365LAKE_LAKE": str(tmp_path / "cli-lake")}


def test_backup_then_sql_json(emulator_env, tenant: Tenant):
    backup = m365lake("backup", env=emulator_env)
    result = m365lake(
        "sql", "--format", "json", "SELECT count(*) AS n FROM messages", env=emulator_env
    )

    assert backup.returncode == 0, backup.stderr
    assert "mailboxes archived" in backup.stdout
    expected = sum(
        len(tenant.live_messages(info.user.user_principal_name)) for info in tenant.users()
    )
    assert json.loads(result.stdout) == [{"n": expected}]


def test_sql_rejects_writes_with_what_is_allowed(emulator_env):
    m365lake("backup", env=emulator_env)

    result = m365lake("sql", "DELETE FROM messages", env=emulator_env)

    assert result.returncode != 0
    assert "SELECT" in result.stderr


def test_backup_unknown_mailbox_fails_clearly(emulator_env):
    result = m365lake("backup", "--mailbox", "nobody@contoso.example", env=emulator_env)

    assert result.returncode != 0
    assert "nobody@contoso.example" in result.stderr


def test_backup_without_tenant_settings_names_variables(tmp_path: Path):
    clean = {name: "" for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")}

    result = m365lake("backup", "--lake", str(tmp_path / "lake"), env=clean)

    assert result.returncode != 0
    assert "AZURE_TENANT_ID" in result.stderr


def test_wrong_client_secret_is_an_authentication_error(emulator_env):
    result = m365lake("backup", env={**emulator_env, "AZURE_CLIENT_SECRET": "not-the-secret"})

    assert result.returncode != 0
    assert "AZURE_CLIENT_SECRET" in result.stderr
    assert "not-the-secret" not in result.stderr + result.stdout


def test_emulator_serve_prints_client_environment(tmp_path: Path):
    process = subprocess.Popen(
        [sys.executable, "-m", "m365lake", "emulator", "serve", "--state", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        exports = {}
        while len(exports) < 6:
            line = process.stdout.readline()
            assert line, "emulator serve exited before printing its environment"
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                exports[name] = value
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert exports["M365LAKE_GRAPH_URL"].startswith("https://127.0.0.1:")
    assert Path(exports["M365LAKE_CA_BUNDLE"]).is_file()
    assert exports["AZURE_TENANT_ID"] and exports["AZURE_CLIENT_ID"]


def test_certificate_credential_backs_up(tenant: Tenant, emulator: EmulatorServer, tmp_path: Path):
    key_pem, certificate_pem = create_client_certificate()
    tenant.app.add_certificate(certificate_pem)
    credential = tmp_path / "app.pem"
    credential.write_bytes(key_pem + certificate_pem)
    settings = dataclasses.replace(
        emulator.settings(), client_secret=None, certificate_path=credential
    )

    summary = asyncio.run(backup_mail(settings, Lake.open(tmp_path / "lake")))

    assert summary.results
    assert not summary.failed


@pytest.mark.parametrize("command", [("sql", "SELECT 1"), ("catalog",), ("verify",)])
def test_read_command_without_lake_creates_nothing(tmp_path: Path, command: tuple[str, ...]):
    absent = tmp_path / "absent"

    result = m365lake(*command, env={"M365LAKE_LAKE": str(absent)})

    assert result.returncode == 1
    assert f"no lake at {absent}" in result.stderr
    assert "m365lake backup" in result.stderr
    assert "--lake" in result.stderr
    assert "Traceback" not in result.stderr
    assert not absent.exists()


@pytest.mark.parametrize("command", [("sql", "SELECT 1"), ("catalog",), ("backup",)])
def test_lake_option_naming_file_is_one_line(tmp_path: Path, command: tuple[str, ...]):
    target = tmp_path / "a-file"
    target.write_text("not a lake\n")

    result = m365lake(
        *command,
        "--lake",
        str(target),
        env={"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s"},
    )

    assert result.returncode == 1
    assert f"lake location {target} is a file, not a folder" in result.stderr
    assert "Traceback" not in result.stderr
    assert target.read_text() == "not a lake\n"


def test_emulator_serve_empty_corpus_is_clear(tmp_path: Path):
    (tmp_path / "empty").mkdir()

    result = m365lake(
        "emulator", "serve", "--corpus", str(tmp_path / "empty"), "--state", str(tmp_path / "s")
    )

    assert result.returncode == 1
    assert "no mail messages found" in result.stderr
    assert "Traceback" not in result.stderr


def test_emulator_serve_skips_dangling_symlinks(tmp_path: Path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "settings.conf").write_text("# not mail\nvalue = 1\n")
    (corpus / "dangling.eml").symlink_to(tmp_path / "gone.eml")

    result = m365lake("emulator", "serve", "--corpus", str(corpus), "--state", str(tmp_path / "s"))

    assert result.returncode == 1
    assert "no mail messages found" in result.stderr
    assert "unreadable: 1" in result.stderr
    assert "dangling.eml" in result.stderr
    assert "Traceback" not in result.stderr


def test_verify_ok_then_reports_damage(emulator_env):
    lake_path = Path(emulator_env["M365LAKE_LAKE"])
    m365lake("backup", env=emulator_env)
    lake = Lake.open(lake_path, create=False)
    blob = lake.blobs.put(b"large attachment " * 10_000)

    clean = m365lake("verify", env=emulator_env)

    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.startswith(f"OK: the lake at {lake_path} passed verification")
    assert "blobs" in clean.stdout

    damaged = lake.committed_files("messages")[0]
    data = bytearray(damaged.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(byte ^ 0xFF for byte in data[middle : middle + 16])
    damaged.write_bytes(bytes(data))
    blob_path = lake_path / lake.blobs.relative_path(blob)
    blob_path.write_bytes(blob_path.read_bytes()[: blob_path.stat().st_size // 2])

    result = m365lake("verify", env=emulator_env)
    without_blobs = m365lake("verify", "--no-blobs", env=emulator_env)

    assert result.returncode == 1
    relative = damaged.relative_to(lake_path).as_posix()
    problems = result.stdout.splitlines()
    assert len(problems) == 2
    assert relative in problems[0]
    assert "hashes to" in problems[0]
    assert blob in problems[1]
    assert "failed with 2 problem(s)" in result.stderr
    assert without_blobs.returncode == 1
    assert without_blobs.stdout.splitlines() == problems[:1]


def test_sql_table_prints_hash_whole(emulator_env):
    m365lake("backup", env=emulator_env)

    result = m365lake(
        "sql", "SELECT mime_sha256, subject FROM messages ORDER BY 1 LIMIT 3", env=emulator_env
    )
    as_json = m365lake(
        "sql",
        "--format",
        "json",
        "SELECT mime_sha256 FROM messages ORDER BY 1 LIMIT 3",
        env=emulator_env,
    )

    assert result.returncode == 0, result.stderr
    hashes = [record["mime_sha256"] for record in json.loads(as_json.stdout)]
    assert len(hashes) == 3
    for digest in hashes:
        assert digest in result.stdout


def test_sql_json_encodes_binary_as_base64(emulator_env):
    m365lake("backup", env=emulator_env)

    result = m365lake(
        "sql",
        "--format",
        "json",
        "SELECT mime_inline, to_addresses, captured_at FROM messages "
        "WHERE mime_inline IS NOT NULL LIMIT 1",
        env=emulator_env,
    )

    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)[0]
    assert b"message-id:" in base64.b64decode(record["mime_inline"]).lower()
    assert isinstance(record["to_addresses"], list)
    assert "T" in record["captured_at"]


def test_moved_lake_queries_its_own_files(emulator_env, tmp_path: Path):
    m365lake("backup", env=emulator_env)
    before = m365lake(
        "sql", "--format", "json", "SELECT count(*) AS n FROM messages", env=emulator_env
    )
    moved = tmp_path / "moved-lake"
    Path(emulator_env["M365LAKE_LAKE"]).rename(moved)

    after = m365lake(
        "sql", "--format", "json", "SELECT count(*) AS n FROM messages", "--lake", str(moved)
    )

    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout)


def test_stray_manifest_error_says_what_to_do(emulator_env):
    m365lake("backup", env=emulator_env)
    stray = Path(emulator_env["M365LAKE_LAKE"]) / "commits" / "0000000099.json"
    stray.write_text("{}\n")

    result = m365lake("sql", "SELECT 1", env=emulator_env)

    assert result.returncode == 1
    assert "0000000099.json" in result.stderr
    assert "move it out of commits/" in result.stderr
    assert "m365lake verify" in result.stderr
    assert "Traceback" not in result.stderr


def test_ca_bundle_directory_is_clear(emulator_env, tmp_path: Path):
    result = m365lake("backup", env={**emulator_env, "M365LAKE_CA_BUNDLE": str(tmp_path)})

    assert result.returncode == 1
    assert f"CA bundle {tmp_path} is a directory, expected a PEM file" in result.stderr
    assert "Traceback" not in result.stderr


def test_http_graph_url_hints_https(emulator_env):
    url = emulator_env["M365LAKE_GRAPH_URL"].replace("https://", "http://")

    result = m365lake("backup", env={**emulator_env, "M365LAKE_GRAPH_URL": url})

    assert result.returncode == 1
    assert url in result.stderr
    assert "https://" in result.stderr
    assert "Traceback" not in result.stderr


def test_backup_files_workload_archives_every_drive(emulator_env, tenant: Tenant):
    backup = m365lake("backup", "--workload", "files", env=emulator_env)
    result = m365lake(
        "sql", "--format", "json", "SELECT count(*) AS n FROM files", env=emulator_env
    )

    assert backup.returncode == 0, backup.stderr
    assert "drives archived" in backup.stdout
    drives = [
        tenant.drive_id_for("onedrive", info.user.user_principal_name) for info in tenant.users()
    ]
    drives += [
        tenant.drive_id_for("site", site.name, library)
        for site in tenant.sites()
        for library in site.libraries
    ]
    expected = sum(len(tenant.live_files(drive_id)) for drive_id in drives)
    assert json.loads(result.stdout) == [{"n": expected}]

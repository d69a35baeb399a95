"""The m365lake command as a terminal user runs it, against the emulator."""

from __future__ import annotations

import asyncio
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

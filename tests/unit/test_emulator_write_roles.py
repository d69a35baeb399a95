"""``emulator serve --write-roles``: tokens carry the write permissions restore needs."""

from __future__ import annotations

import base64
import json
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from m365lake.cli import main
from m365lake.emulator import runtime
from m365lake.emulator.records import RESTORE_ROLES
from m365lake.emulator.runtime import RunningEmulator, start_emulator


def token_roles(running: RunningEmulator) -> list[str]:
    environment = running.environment()
    response = httpx.post(
        f"{environment['AZURE_AUTHORITY_HOST']}/{environment['AZURE_TENANT_ID']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": environment["AZURE_CLIENT_ID"],
            "client_secret": environment["AZURE_CLIENT_SECRET"],
            "scope": "https://graph.microsoft.com/.default",
        },
        verify=ssl.create_default_context(cafile=environment["M365LAKE_CA_BUNDLE"]),
    )
    response.raise_for_status()
    payload = response.json()["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return list(claims["roles"])


def test_write_roles_reach_the_token(tmp_path: Path) -> None:
    running = start_emulator(corpus=None, state_dir=tmp_path, extra_roles=RESTORE_ROLES)
    try:
        roles = token_roles(running)
    finally:
        running.stop()

    assert set(RESTORE_ROLES) <= set(roles)
    assert "Mail.Read" in roles


def test_default_grants_read_only(tmp_path: Path) -> None:
    running = start_emulator(corpus=None, state_dir=tmp_path)
    try:
        roles = token_roles(running)
    finally:
        running.stop()

    assert not set(RESTORE_ROLES) & set(roles)


class _Stopped:
    def environment(self) -> dict[str, str]:
        return {}

    def stop(self) -> None:
        pass


def test_serve_flag_passes_write_roles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    granted: list[tuple[str, ...]] = []

    def fake_start(**arguments: Any) -> _Stopped:
        granted.append(tuple(arguments["extra_roles"]))
        return _Stopped()

    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runtime, "start_emulator", fake_start)
    monkeypatch.setattr(time, "sleep", interrupt)
    state = str(tmp_path / "state")

    CliRunner().invoke(main, ["emulator", "serve", "--state", state, "--write-roles"])
    CliRunner().invoke(main, ["emulator", "serve", "--state", state])

    assert granted == [RESTORE_ROLES, ()]

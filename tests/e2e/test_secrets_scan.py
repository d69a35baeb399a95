"""Secrets stay out of logs, errors, Dagster metadata and the lake.

A backup of mail and files runs through the Dagster assets against the emulator while
every token and pre-authenticated download URL the emulator hands out is recorded.
Then the captured log records, the text of errors from failed sign-ins and denied
requests, the materialization metadata and every byte of the lake (Parquet decoded
to text as well) are searched for each of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from m365lake.backup import backup_mail
from m365lake.config import GraphSettings
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.auth import TokenIssuer
from m365lake.emulator.downloads import DownloadService
from m365lake.emulator.generator import generate_tenant
from m365lake.errors import M365LakeError
from m365lake.lake import Lake
from pipelines.assets import drive_archive, mailbox_archive
from pipelines.deployments import resources_for
from pipelines.partitions import drive_partitions, mailbox_partitions


class Issued:
    """Every secret the emulator hands out during the test."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, value: str) -> None:
        self.values.add(value)
        # A JWT's signature alone would still be a leak, and so would a URL's credential.
        parts = value.split(".")
        if len(parts) == 3 and value.startswith("ey"):
            self.values.add(parts[2])
        for pair in value.partition("?")[2].split("&"):
            credential = pair.partition("=")[2]
            if len(credential) >= 16:
                self.values.add(credential)


@pytest.fixture
def issued(monkeypatch: pytest.MonkeyPatch) -> Issued:
    record = Issued()
    original_issue = TokenIssuer.issue
    original_url = DownloadService.url

    def issue(self: TokenIssuer, *args: Any, **kwargs: Any) -> str:
        token = original_issue(self, *args, **kwargs)
        record.add(token)
        return token

    def url(self: DownloadService, *args: Any, **kwargs: Any) -> str:
        address = original_url(self, *args, **kwargs)
        record.add(address)
        return address

    monkeypatch.setattr(TokenIssuer, "issue", issue)
    monkeypatch.setattr(DownloadService, "url", url)
    return record


@pytest.fixture
def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, issued: Issued
) -> Iterator[tuple[EmulatorServer, Tenant, Path]]:
    tenant = Tenant.from_seed(generate_tenant(seed=5, users=2, messages_per_user=10))
    with EmulatorServer(tenant, tmp_path / "state") as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("M365LAKE_LAKE", str(tmp_path / "lake"))
        issued.add(server.client_secret)
        yield server, tenant, tmp_path / "lake"


def metadata_text(outcome: dg.ExecuteInProcessResult) -> str:
    parts = []
    for materialization in outcome.asset_materializations_for_node("mailbox_archive") + (
        outcome.asset_materializations_for_node("drive_archive")
    ):
        parts += [f"{key}={value.value!r}" for key, value in materialization.metadata.items()]
    return "\n".join(parts)


def lake_text(root: Path) -> str:
    """Return the lake's raw bytes as text, plus every Parquet table decoded to text."""
    parts = [path.read_bytes().decode("latin-1") for path in root.rglob("*") if path.is_file()]
    with duckdb.connect() as db:
        for path in root.rglob("*.parquet"):
            rows = db.execute("SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
            parts.append(repr(rows))
    return "\n".join(parts)


def failure_texts(server: EmulatorServer, lake: Lake) -> list[str]:
    """Return the messages of a failed sign-in and of a denied request, with their causes."""
    texts = []
    wrong = GraphSettings(**{**server.settings().__dict__, "client_secret": "wrong-" + "x" * 24})
    denied_user = server.tenant.users()[0].user.user_principal_name
    server.inject(path_pattern=r"/mailFolders", status=403, code="ErrorAccessDenied", times=50)
    for settings in (wrong, server.settings()):
        with pytest.raises(M365LakeError) as caught:
            summary = asyncio.run(backup_mail(settings, lake, users=[denied_user]))
            raise M365LakeError(repr(summary.failed))
        error: BaseException | None = caught.value
        while error is not None:
            texts.append(f"{type(error).__name__}: {error} {error.args!r}")
            error = error.__cause__ or error.__context__
    return texts


def test_no_secret_in_logs_errors_metadata_or_lake(
    served: tuple[EmulatorServer, Tenant, Path],
    issued: Issued,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, tenant, lake_root = served
    users = [info.user.user_principal_name for info in tenant.users()]
    drive_id = tenant.drive_id_for("onedrive", users[0])
    instance = dg.DagsterInstance.ephemeral()
    assert mailbox_partitions.name is not None and drive_partitions.name is not None
    instance.add_dynamic_partitions(mailbox_partitions.name, users)
    instance.add_dynamic_partitions(drive_partitions.name, [drive_id])

    with caplog.at_level(logging.DEBUG):
        outcomes = [
            dg.materialize(
                [mailbox_archive],
                partition_key=user,
                instance=instance,
                resources=resources_for("emulator"),
            )
            for user in users
        ]
        outcomes.append(
            dg.materialize(
                [drive_archive],
                partition_key=drive_id,
                instance=instance,
                resources=resources_for("emulator"),
            )
        )
        errors = failure_texts(server, Lake.open(lake_root))

    assert all(outcome.success for outcome in outcomes)
    # The scan is only meaningful if tokens and download URLs were really handed out.
    assert any(value.startswith("ey") for value in issued.values)
    assert any("tempauth=" in value for value in issued.values)
    assert len(caplog.records) > 50
    assert len(errors) >= 2
    places = {
        "logs": "\n".join(
            f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
            for record in caplog.records
        ),
        "errors": "\n".join(errors),
        "dagster metadata": "\n".join(metadata_text(outcome) for outcome in outcomes),
        "lake": lake_text(lake_root),
    }
    leaks = [
        f"{place}: {secret[:12]}…"
        for place, text in places.items()
        for secret in sorted(issued.values)
        if secret in text
    ]
    assert leaks == []

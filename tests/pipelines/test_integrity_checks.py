"""Integrity checks after each backup: manifest chain and a blob sample of the newest commit."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import dagster as dg
import pytest

from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import DEFAULT_INLINE_THRESHOLD, Lake
from pipelines.assets import drive_archive, mailbox_archive
from pipelines.calendar import calendar_archive
from pipelines.deployments import resources_for
from pipelines.integrity_checks import (
    calendar_blob_sample,
    calendar_manifest_chain,
    drive_blob_sample,
    drive_manifest_chain,
    mailbox_blob_sample,
    mailbox_manifest_chain,
)
from pipelines.partitions import drive_partitions, mailbox_partitions

MAILBOX_CHECKS = [mailbox_manifest_chain, mailbox_blob_sample]


def _large_message(seed: int) -> bytes:
    """Return a message whose MIME exceeds the inline threshold, so it is stored as a blob."""
    message = EmailMessage()
    message["From"] = "sender@fabrikam.example"
    message["To"] = "custodian@contoso.example"
    message["Subject"] = f"Scanned contract {seed}"
    message.set_content("See the attached scan.\n")
    scan = random.Random(seed).randbytes(DEFAULT_INLINE_THRESHOLD + 200_000)
    message.add_attachment(scan, maintype="image", subtype="tiff", filename="contract.tif")
    return bytes(message)


@pytest.fixture
def tenant() -> Tenant:
    tenant = Tenant.from_seed(generate_tenant(seed=19, users=1, messages_per_user=4))
    user = tenant.users()[0].user.user_principal_name
    tenant.add_message(user, ("Inbox",), _large_message(1))
    return tenant


@pytest.fixture
def user(tenant: Tenant) -> str:
    return tenant.users()[0].user.user_principal_name


@pytest.fixture
def lake_root(tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with EmulatorServer(tenant, tmp_path / "emulator") as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("M365LAKE_LAKE", str(tmp_path / "lake"))
        yield tmp_path / "lake"


@pytest.fixture
def instance(user: str) -> dg.DagsterInstance:
    instance = dg.DagsterInstance.ephemeral()
    assert mailbox_partitions.name is not None
    instance.add_dynamic_partitions(mailbox_partitions.name, [user])
    return instance


def _evaluations(outcome: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {check.check_name: check for check in outcome.get_asset_check_evaluations()}


def _back_up(instance: dg.DagsterInstance, user: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [mailbox_archive, *MAILBOX_CHECKS],
        partition_key=user,
        instance=instance,
        resources=resources_for("emulator"),
    )


def _check_only(instance: dg.DagsterInstance, user: str) -> dict[str, dg.AssetCheckEvaluation]:
    """Run the integrity checks again without a new backup, as from the UI's Checks tab."""
    outcome = dg.materialize(
        [mailbox_archive, *MAILBOX_CHECKS],
        selection=dg.AssetSelection.checks(*MAILBOX_CHECKS),
        # Checks are not partitioned, so the partition goes in the run's tag, where the
        # checks read it.
        tags={"dagster/partition": user},
        instance=instance,
        resources=resources_for("emulator"),
        raise_on_error=False,
    )
    return _evaluations(outcome)


def _blob_files(lake_root: Path) -> list[Path]:
    return sorted(path for path in (lake_root / "blobs").rglob("*") if path.is_file())


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_checks_pass_after_backup(lake_root: Path, instance: dg.DagsterInstance, user: str) -> None:
    outcome = _back_up(instance, user)

    evaluations = _evaluations(outcome)
    chain = evaluations["mailbox_manifest_chain"]
    blobs = evaluations["mailbox_blob_sample"]
    commit_seq = (
        outcome.asset_materializations_for_node("mailbox_archive")[0].metadata["commit_seq"].value
    )
    assert chain.passed
    assert chain.metadata["commit_seq"].value == commit_seq
    assert chain.metadata["files"].value >= 1
    assert blobs.passed
    assert blobs.metadata["commit_seq"].value == commit_seq
    assert blobs.metadata["blobs_referenced"].value == 1
    assert blobs.metadata["blobs_checked"].value == 1


def test_damaged_blob_fails_sample(
    lake_root: Path, instance: dg.DagsterInstance, user: str
) -> None:
    assert _back_up(instance, user).success
    [blob] = _blob_files(lake_root)
    _flip_byte(blob)

    evaluations = _check_only(instance, user)

    blobs = evaluations["mailbox_blob_sample"]
    assert not blobs.passed
    assert blobs.severity == dg.AssetCheckSeverity.ERROR
    assert blob.name in str(blobs.metadata["problems"].value)
    assert evaluations["mailbox_manifest_chain"].passed, "blobs are not listed in manifests"


def test_changed_table_file_fails_chain(
    lake_root: Path, instance: dg.DagsterInstance, user: str
) -> None:
    assert _back_up(instance, user).success
    messages = next((lake_root / "tables" / "messages").rglob("*.parquet"))
    with messages.open("ab") as handle:
        handle.write(b"\0")

    evaluations = _check_only(instance, user)

    chain = evaluations["mailbox_manifest_chain"]
    assert not chain.passed
    assert "hashes to" in str(chain.metadata["problems"].value)
    assert messages.name in str(chain.metadata["problems"].value)


def test_edited_manifest_breaks_chain(
    tenant: Tenant, lake_root: Path, instance: dg.DagsterInstance, user: str
) -> None:
    assert _back_up(instance, user).success
    tenant.add_message(user, ("Inbox",), b"From: a@fabrikam.example\r\nSubject: later\r\n\r\nx\r\n")
    assert _back_up(instance, user).success
    first = sorted((lake_root / "commits").glob("*.json"))[0]
    manifest = json.loads(first.read_text())
    manifest["counts"]["messages_new"] += 1
    first.write_text(json.dumps(manifest))

    evaluations = _check_only(instance, user)

    chain = evaluations["mailbox_manifest_chain"]
    assert not chain.passed
    assert "prev" in str(chain.metadata["problems"].value)


def test_drive_checks_pass_after_backup(
    tenant: Tenant, lake_root: Path, instance: dg.DagsterInstance, user: str
) -> None:
    drive_id = tenant.drive_id_for("onedrive", user)
    tenant.add_file(
        "onedrive",
        user,
        "Documents",
        ("Scans", "contract.tif"),
        random.Random(2).randbytes(DEFAULT_INLINE_THRESHOLD + 100_000),
    )
    assert drive_partitions.name is not None
    instance.add_dynamic_partitions(drive_partitions.name, [drive_id])

    outcome = dg.materialize(
        [drive_archive, drive_manifest_chain, drive_blob_sample],
        partition_key=drive_id,
        instance=instance,
        resources=resources_for("emulator"),
    )

    evaluations = _evaluations(outcome)
    assert evaluations["drive_manifest_chain"].passed
    blobs = evaluations["drive_blob_sample"]
    assert blobs.passed
    assert blobs.metadata["blobs_checked"].value >= 1
    lake = Lake.open(lake_root, create=False)
    assert blobs.metadata["commit_seq"].value == lake.head().seq


def test_mailbox_checks_read_their_own_workload(
    lake_root: Path, instance: dg.DagsterInstance, user: str
) -> None:
    mail = _back_up(instance, user)
    calendar = dg.materialize(
        [calendar_archive, calendar_manifest_chain, calendar_blob_sample],
        partition_key=user,
        instance=instance,
        resources=resources_for("emulator"),
    )
    mail_seq = mail.asset_materializations_for_node("mailbox_archive")[0].metadata["commit_seq"]
    calendar_seq = calendar.asset_materializations_for_node("calendar_archive")[0].metadata[
        "commit_seq"
    ]

    mailbox = _check_only(instance, user)
    evaluations = _evaluations(calendar)

    assert calendar_seq.value > mail_seq.value
    # The calendar commit is newer, but the mailbox checks still read the mail commit.
    assert mailbox["mailbox_blob_sample"].metadata["commit_seq"].value == mail_seq.value
    assert mailbox["mailbox_blob_sample"].metadata["blobs_referenced"].value == 1
    assert mailbox["mailbox_manifest_chain"].metadata["commit_seq"].value == mail_seq.value
    assert evaluations["calendar_manifest_chain"].passed
    assert evaluations["calendar_manifest_chain"].metadata["commit_seq"].value == calendar_seq.value
    assert evaluations["calendar_blob_sample"].passed
    assert evaluations["calendar_blob_sample"].metadata["commit_seq"].value == calendar_seq.value

"""Contacts backup end to end: the real client against the emulator over HTTPS, into a lake."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from m365lake.backup import backup_mail
from m365lake.backup_contacts import ContactsBackupSummary, backup_contacts
from m365lake.catalog import refresh_catalog
from m365lake.discovery.lake_rows import latest_rows
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake
from m365lake.lake.encryption import ENV_ENCRYPTION_KEY, ENV_ENCRYPTION_KEY_FILE
from m365lake.restore.runner import restore
from m365lake.restore.selection import Selection

ContactsRunner = Callable[[], ContactsBackupSummary]

CONTACT_COLUMNS = [
    "mailbox_id",
    "contact_id",
    "change",
    "deleted_at",
    "folder_id",
    "folder_path",
    "display_name",
    "email_addresses",
    "job_title",
    "json_sha256",
    "json_inline",
]


@pytest.fixture
def tenant() -> Tenant:
    return Tenant.from_seed(generate_tenant(seed=7, users=2, messages_per_user=2))


@pytest.fixture
def first_upn(tenant: Tenant) -> str:
    """Return the mailbox the generator gave a folder "contacts" below "Contacts"."""
    for info in tenant.users():
        live = tenant.live_contacts(info.user.user_principal_name)
        if any(c.folder_path == ("Contacts", "contacts") for c in live.values()):
            return info.user.user_principal_name
    raise AssertionError("the generated tenant has no folder Contacts/contacts")


@pytest.fixture
def run_contacts(emulator: EmulatorServer, lake: Lake) -> ContactsRunner:
    return lambda: asyncio.run(backup_contacts(emulator.settings(), lake))


def _latest_contacts(lake: Lake) -> dict[str, dict[str, Any]]:
    rows = latest_rows(lake, "contacts", ["mailbox_id", "contact_id"], CONTACT_COLUMNS)
    return {row["contact_id"]: row for row in rows}


def _live(tenant: Tenant) -> dict[str, tuple[str, str]]:
    """Contact id → (folder path, display name) of every live contact in the tenant."""
    live = {}
    for info in tenant.users():
        if not info.has_mailbox:
            continue
        for contact_id, contact in tenant.live_contacts(info.user.user_principal_name).items():
            live[contact_id] = ("/".join(contact.folder_path), contact.properties["displayName"])
    return live


def _archived(lake: Lake) -> dict[str, tuple[str, str]]:
    return {
        contact_id: (row["folder_path"], row["display_name"])
        for contact_id, row in _latest_contacts(lake).items()
        if row["change"] != "deleted"
    }


def test_first_run_archives_every_contact(tenant, first_upn, run_contacts, lake: Lake):
    summary = run_contacts()

    assert not summary.failed
    assert summary.total("failures") == 0
    assert _archived(lake) == _live(tenant)
    folders = [
        row
        for row in latest_rows(
            lake,
            "contact_folders",
            ["mailbox_id", "folder_id"],
            ["mailbox_id", "folder_id", "display_name", "folder_path"],
        )
        if row["mailbox_id"] == tenant.user_id(first_upn)
    ]
    paths = sorted(row["folder_path"] for row in folders)
    assert paths == [
        "Contacts",
        "Contacts/Clients",
        "Contacts/Clients/Key accounts",
        "Contacts/Suppliers",
        "Contacts/contacts",
    ]
    assert len({row["folder_id"] for row in folders}) == len(folders)


def test_graph_json_is_kept_whole(tenant, first_upn, run_contacts, lake: Lake):
    run_contacts()

    live = tenant.live_contacts(first_upn)
    for contact_id, row in _latest_contacts(lake).items():
        if contact_id not in live:
            continue
        document = json.loads(lake.read_content(row["json_sha256"], row["json_inline"]))
        properties = live[contact_id].properties
        assert document["id"] == contact_id
        assert document["emailAddresses"] == properties["emailAddresses"]
        assert document["businessAddress"] == properties["businessAddress"]
        assert document["personalNotes"] == properties["personalNotes"]
        assert row["email_addresses"] == [e["address"] for e in properties["emailAddresses"]]


def test_second_run_writes_no_contact_rows(run_contacts, lake: Lake):
    run_contacts()
    files = len(lake.committed_files("contacts"))
    folder_files = len(lake.committed_files("contact_folders"))

    summary = run_contacts()

    assert summary.total("contacts_new") == 0
    assert summary.total("contacts_updated") == 0
    assert summary.total("contacts_deleted") == 0
    assert len(lake.committed_files("contacts")) == files
    assert len(lake.committed_files("contact_folders")) == folder_files


def test_changed_and_deleted_contacts(tenant, first_upn, run_contacts, lake: Lake):
    run_contacts()
    changed, deleted, *_ = sorted(tenant.live_contacts(first_upn))
    tenant.update_contact(first_upn, changed, {"jobTitle": "Chief Buyer"})
    tenant.delete_contact(first_upn, deleted)
    added = tenant.add_contact(first_upn, ("Clients",), {"displayName": "New Client"})

    summary = run_contacts()

    assert summary.total("contacts_new") == 1
    assert summary.total("contacts_updated") == 1
    assert summary.total("contacts_deleted") == 1
    latest = _latest_contacts(lake)
    assert latest[changed]["job_title"] == "Chief Buyer"
    assert latest[changed]["change"] == "updated"
    assert latest[deleted]["change"] == "deleted"
    assert latest[deleted]["deleted_at"] is not None
    assert latest[added]["folder_path"] == "Contacts/Clients"
    assert _archived(lake) == _live(tenant)


def test_deleted_folder_deletes_its_contacts(tenant, first_upn, run_contacts, lake: Lake):
    run_contacts()
    clients = tenant.add_contact_folder(first_upn, ("Clients",))
    inside = {
        contact_id
        for contact_id, contact in tenant.live_contacts(first_upn).items()
        if contact.folder_path[:2] == ("Contacts", "Clients")
    }
    tenant.delete_contact_folder(first_upn, clients)

    summary = run_contacts()

    assert summary.total("contacts_deleted") == len(inside) > 0
    latest = _latest_contacts(lake)
    assert {cid for cid in inside if latest[cid]["change"] == "deleted"} == inside
    assert _archived(lake) == _live(tenant)


def test_expired_tokens_resync_without_duplicates(tenant, first_upn, run_contacts, lake: Lake):
    run_contacts()
    files = len(lake.committed_files("contacts"))
    gone = sorted(tenant.live_contacts(first_upn))[0]
    tenant.expire_sync_state()

    summary = run_contacts()
    # The resync lists every contact again; none changed, so none gets a new version.
    assert summary.total("resyncs") > 0
    assert summary.total("contacts_new") == 0
    assert summary.total("contacts_updated") == 0
    assert summary.total("contacts_deleted") == 0
    assert len(lake.committed_files("contacts")) == files

    tenant.expire_sync_state()
    tenant.delete_contact(first_upn, gone)
    summary = run_contacts()
    assert summary.total("contacts_deleted") == 1
    assert _latest_contacts(lake)[gone]["change"] == "deleted"
    assert _archived(lake) == _live(tenant)


def test_cli_contacts_workload(tenant, first_upn, emulator: EmulatorServer, tmp_path):
    environment = {
        **os.environ,
        **emulator.environment(),
        "M365LAKE_LAKE": str(tmp_path / "cli-lake"),
    }

    def m365lake(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "m365lake", *args],
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )

    backup = m365lake("backup", "--workload", "contacts")
    count = m365lake("sql", "--format", "json", "SELECT count(*) AS n FROM contacts")
    folders = m365lake(
        "sql",
        "--format",
        "json",
        "SELECT folder_path FROM contact_folders WHERE display_name ILIKE 'contacts' "
        "ORDER BY folder_path",
    )

    assert backup.returncode == 0, backup.stderr
    assert "contacts of 2 mailboxes archived" in backup.stdout
    assert json.loads(count.stdout) == [{"n": len(_live(tenant))}]
    paths = [row["folder_path"] for row in json.loads(folders.stdout)]
    assert paths == ["Contacts", "Contacts", "Contacts/contacts"]


def test_moved_contact_is_one_contact(tenant, first_upn, run_contacts, lake: Lake):
    run_contacts()
    moved = sorted(
        cid
        for cid, contact in tenant.live_contacts(first_upn).items()
        if contact.folder_path == ("Contacts",)
    )[0]
    tenant.move_contact(first_upn, moved, ("contacts",))

    summary = run_contacts()

    assert summary.total("contacts_deleted") == 0
    assert summary.total("contacts_updated") == 1
    latest = _latest_contacts(lake)[moved]
    assert latest["change"] == "updated"
    assert latest["folder_path"] == "Contacts/contacts"
    assert _archived(lake) == _live(tenant)


def test_throttled_delta_is_retried(tenant, emulator: EmulatorServer, run_contacts, lake: Lake):
    emulator.inject(path_pattern=r"/contacts/delta", status=429, times=3, retry_after="0.2")

    summary = run_contacts()

    assert not summary.failed
    assert summary.graph is not None
    assert summary.graph.throttled >= 3
    assert _archived(lake) == _live(tenant)


def test_folder_gone_mid_run_is_a_failure_row(
    tenant, first_upn, emulator: EmulatorServer, run_contacts, lake: Lake
):
    clients = tenant.add_contact_folder(first_upn, ("Clients",))
    emulator.inject(
        path_pattern=f"/contactFolders/{clients}/contacts/delta",
        status=404,
        code="ErrorItemNotFound",
    )

    summary = run_contacts()

    assert summary.total("failures") == 1
    failures = latest_rows(
        lake,
        "failures",
        ["run_id", "container_id"],
        ["workload", "container_id", "stage", "outcome", "reason"],
    )
    assert failures == [
        {
            "workload": "contacts",
            "container_id": clients,
            "stage": "list",
            "outcome": "skipped",
            "reason": "ErrorItemNotFound",
        }
    ]
    in_clients = {
        cid
        for cid, contact in tenant.live_contacts(first_upn).items()
        if contact.folder_id == clients
    }
    assert in_clients
    assert not in_clients & set(_archived(lake))

    run_contacts()
    assert _archived(lake) == _live(tenant)


def test_failed_run_commits_nothing(
    tenant, first_upn, emulator: EmulatorServer, run_contacts, lake: Lake
):
    clients = tenant.add_contact_folder(first_upn, ("Clients",))
    emulator.inject(path_pattern=f"/contactFolders/{clients}/contacts/delta", status=400)

    failed = run_contacts()

    assert list(failed.failed) == [first_upn]
    first_mailbox = tenant.user_id(first_upn)
    assert not [
        row for row in _latest_contacts(lake).values() if row["mailbox_id"] == first_mailbox
    ]

    again = run_contacts()

    assert not again.failed
    assert _archived(lake) == _live(tenant)
    rows = latest_rows(lake, "contacts", ["run_id", "contact_id"], ["contact_id"])
    assert len(rows) == len(_live(tenant))


def test_missing_permission_is_named(tenant, run_contacts, lake: Lake):
    tenant.app.roles.remove("Contacts.Read")

    summary = run_contacts()

    assert not summary.results
    assert len(summary.failed) == 2
    assert all("Contacts.Read" in reason for reason in summary.failed.values())
    assert lake.committed_files("contacts") == []


def test_runs_beside_mail_backup(tenant, emulator: EmulatorServer, lake: Lake):
    async def both() -> tuple[Any, ContactsBackupSummary]:
        return await asyncio.gather(
            backup_mail(emulator.settings(), lake), backup_contacts(emulator.settings(), lake)
        )

    mail, contacts = asyncio.run(both())

    assert not mail.failed
    assert not contacts.failed
    # Each workload takes its own lease, so neither run skips the mailbox.
    assert not mail.skipped
    assert not contacts.skipped
    assert _archived(lake) == _live(tenant)


def test_encrypted_lake_hides_contacts(tenant, emulator: EmulatorServer, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_ENCRYPTION_KEY_FILE, raising=False)
    monkeypatch.setenv(ENV_ENCRYPTION_KEY, "contacts-key:" + base64.b64encode(bytes(32)).decode())
    lake = Lake.open(tmp_path / "encrypted")

    first = asyncio.run(backup_contacts(emulator.settings(), lake))
    second = asyncio.run(backup_contacts(emulator.settings(), lake))

    assert not first.failed
    assert second.total("contacts_new") + second.total("contacts_updated") == 0
    assert _archived(lake) == _live(tenant)
    names = {name.encode() for _, name in _live(tenant).values()}
    for path in (lake.root / "tables").rglob("*.parquet"):
        data = path.read_bytes()
        assert not [name for name in names if name in data], path

    refresh_catalog(lake)
    upn = sorted(info.user.user_principal_name for info in tenant.users())[0]
    plan = asyncio.run(
        restore(
            lake,
            emulator.settings(),
            Selection(custodian=upn, workloads=("contacts",)),
            actor="tester",
        )
    )
    counts = plan.report.counts()
    assert counts["already_present"] == len(tenant.live_contacts(upn)) + len(
        {contact.folder_id for contact in tenant.live_contacts(upn).values()}
    )
    assert counts["created"] == 0

"""Contacts restore end to end: back up, delete from the tenant, restore, compare folders."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime

import pytest

from m365lake.backup_contacts import backup_contacts
from m365lake.catalog import refresh_catalog
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake
from m365lake.restore.model import ConflictPolicy, Outcome, RestoreTarget
from m365lake.restore.runner import RestoreRun, restore
from m365lake.restore.selection import Selection, SelectionError

CONTACTS_ONLY = ("contacts",)


@pytest.fixture
def tenant() -> Tenant:
    tenant = Tenant.from_seed(generate_tenant(seed=7, users=2, messages_per_user=2))
    tenant.app.roles.append("Contacts.ReadWrite")
    return tenant


@pytest.fixture
def upn(tenant: Tenant) -> str:
    """Return the mailbox the generator gave a folder "contacts" below "Contacts"."""
    for info in tenant.users():
        live = tenant.live_contacts(info.user.user_principal_name)
        if any(c.folder_path == ("Contacts", "contacts") for c in live.values()):
            return info.user.user_principal_name
    raise AssertionError("the generated tenant has no folder Contacts/contacts")


def _backup(emulator: EmulatorServer, lake: Lake) -> None:
    summary = asyncio.run(backup_contacts(emulator.settings(), lake))
    assert not summary.failed
    refresh_catalog(lake)


def _restore(
    emulator: EmulatorServer,
    lake: Lake,
    selection: Selection,
    *,
    target: RestoreTarget | None = None,
    policy: ConflictPolicy = ConflictPolicy.SKIP,
    dry_run: bool = False,
) -> RestoreRun:
    return asyncio.run(
        restore(
            lake,
            emulator.settings(),
            selection,
            target=target,
            policy=policy,
            dry_run=dry_run,
            actor="tester",
        )
    )


def _by_folder(tenant: Tenant, upn: str) -> Counter[tuple[tuple[str, ...], str]]:
    """Count live contacts by (folder path, display name)."""
    return Counter(
        (contact.folder_path, contact.properties.get("displayName", ""))
        for contact in tenant.live_contacts(upn).values()
    )


def test_case_twin_folders_stay_apart(tenant, upn, emulator, lake: Lake):
    before = _by_folder(tenant, upn)
    assert any(path == ("Contacts",) for path, _ in before)
    assert any(path == ("Contacts", "contacts") for path, _ in before)
    _backup(emulator, lake)
    twin = tenant.add_contact_folder(upn, ("contacts",))
    for contact_id, contact in tenant.live_contacts(upn).items():
        if contact.folder_path == ("Contacts",):
            tenant.delete_contact(upn, contact_id)
    tenant.delete_contact_folder(upn, twin)

    run = _restore(emulator, lake, Selection(custodian=upn, workloads=CONTACTS_ONLY))

    assert run.succeeded, (run.report.counts(), run.problems)
    assert _by_folder(tenant, upn) == before
    recreated = tenant.add_contact_folder(upn, ("contacts",))
    assert recreated != twin
    assert run.report.counts()["failed"] == 0


def test_second_restore_creates_nothing(tenant, upn, emulator, lake: Lake):
    _backup(emulator, lake)
    twin = tenant.add_contact_folder(upn, ("contacts",))
    tenant.delete_contact_folder(upn, twin)
    first = _restore(emulator, lake, Selection(custodian=upn, workloads=CONTACTS_ONLY))
    after_first = _by_folder(tenant, upn)

    again = _restore(emulator, lake, Selection(custodian=upn, workloads=CONTACTS_ONLY))

    assert first.report.counts()["created"] > 0
    assert again.report.counts()["created"] == 0
    assert again.report.counts()["failed"] == 0
    assert _by_folder(tenant, upn) == after_first


def test_collision_skipped_by_default(tenant, upn, emulator, lake: Lake):
    _backup(emulator, lake)
    default_contacts = [
        contact_id
        for contact_id, contact in tenant.live_contacts(upn).items()
        if contact.folder_path == ("Contacts",)
    ]
    victim = default_contacts[0]
    properties = tenant.live_contacts(upn)[victim].properties
    tenant.delete_contact(upn, victim)
    tenant.add_contact(upn, (), properties)
    selection = Selection(item_ids=(victim,), workloads=CONTACTS_ONLY)

    skipped = _restore(emulator, lake, selection)
    assert [r.outcome for r in skipped.report.items if r.planned.source_item_id == victim] == [
        Outcome.SKIPPED
    ]
    assert sum(1 for _, name in _by_folder(tenant, upn) if name == properties["displayName"])

    replaced = _restore(emulator, lake, selection, policy=ConflictPolicy.REPLACE)
    outcomes = [r.outcome for r in replaced.report.items if r.planned.source_item_id == victim]
    assert outcomes == [Outcome.REPLACED]
    names = Counter(name for (path, name) in _by_folder(tenant, upn).elements())
    assert names[properties["displayName"]] == 1


def test_restore_folder_keeps_paths_below_it(tenant, upn, emulator, lake: Lake):
    before = _by_folder(tenant, upn)
    _backup(emulator, lake)

    run = _restore(
        emulator,
        lake,
        Selection(custodian=upn, workloads=CONTACTS_ONLY),
        target=RestoreTarget(restore_folder="Restored 2026"),
    )

    assert run.succeeded, (run.report.counts(), run.problems)
    after = _by_folder(tenant, upn)
    restored = Counter(
        {
            (path[:1] + path[2:], name): count
            for (path, name), count in after.items()
            if path[1:2] == ("Restored 2026",)
        }
    )
    assert restored == before


def test_dry_run_creates_nothing(tenant, upn, emulator, lake: Lake):
    _backup(emulator, lake)
    twin = tenant.add_contact_folder(upn, ("contacts",))
    tenant.delete_contact_folder(upn, twin)
    before = _by_folder(tenant, upn)

    run = _restore(emulator, lake, Selection(custodian=upn, workloads=CONTACTS_ONLY), dry_run=True)

    assert run.report.counts()["created"] > 0
    assert _by_folder(tenant, upn) == before


def test_mail_selection_leaves_contacts_alone(tenant, upn, emulator, lake: Lake):
    _backup(emulator, lake)

    with pytest.raises(SelectionError, match="matches no archived item"):
        _restore(emulator, lake, Selection(custodian=upn), dry_run=True)


def test_restore_command_contacts_folder(tenant, upn, emulator, lake: Lake, tmp_path):
    _backup(emulator, lake)
    twin = tenant.add_contact_folder(upn, ("contacts",))
    before = _by_folder(tenant, upn)
    tenant.delete_contact_folder(upn, twin)
    environment = {
        **os.environ,
        **emulator.environment(),
        "M365LAKE_LAKE": str(lake.root),
        "M365LAKE_ACTOR": "restore-officer",
    }
    arguments = ["--custodian", upn, "--workload", "contacts", "--folder", "Contacts/contacts"]

    result = subprocess.run(
        [sys.executable, "-m", "m365lake", "restore", *arguments, "--execute", "--format", "json"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr + result.stdout
    counts = json.loads(result.stdout)["counts"]
    twins = sum(1 for path, _ in before.elements() if path == ("Contacts", "contacts"))
    assert counts["created"] == twins + 1
    assert _by_folder(tenant, upn) == before


def test_missing_write_permission_is_named(tenant, upn, emulator, lake: Lake):
    _backup(emulator, lake)
    twin = tenant.add_contact_folder(upn, ("contacts",))
    tenant.delete_contact_folder(upn, twin)
    tenant.app.roles.remove("Contacts.ReadWrite")

    run = _restore(emulator, lake, Selection(custodian=upn, workloads=CONTACTS_ONLY))

    assert not run.succeeded
    failed = [result for result in run.report.items if result.outcome is Outcome.FAILED]
    assert failed
    assert "Contacts.ReadWrite" in (failed[0].reason or "")


def test_as_of_restores_earlier_version(tenant, upn, emulator, lake: Lake):
    changed = sorted(tenant.live_contacts(upn))[0]
    original = tenant.live_contacts(upn)[changed].properties
    _backup(emulator, lake)
    before_change = datetime.now(UTC)
    tenant.update_contact(upn, changed, {"jobTitle": "Changed title"})
    _backup(emulator, lake)

    run = _restore(
        emulator,
        lake,
        Selection(item_ids=(changed,), workloads=CONTACTS_ONLY, as_of=before_change),
        target=RestoreTarget(restore_folder="Before"),
    )

    assert run.succeeded, (run.report.counts(), run.problems)
    restored = [
        contact
        for contact in tenant.live_contacts(upn).values()
        if contact.folder_path[:2] == ("Contacts", "Before")
    ]
    assert len(restored) == 1
    assert restored[0].properties.get("jobTitle") == original.get("jobTitle")
    assert tenant.live_contacts(upn)[changed].properties["jobTitle"] == "Changed title"


def test_restore_into_another_mailbox(tenant, upn, emulator, lake: Lake):
    other = next(
        info.user.user_principal_name
        for info in tenant.users()
        if info.has_mailbox and info.user.user_principal_name != upn
    )
    source = _by_folder(tenant, upn)
    _backup(emulator, lake)

    run = _restore(
        emulator,
        lake,
        Selection(custodian=upn, workloads=CONTACTS_ONLY),
        target=RestoreTarget(mailbox_id=tenant.user_id(other), restore_folder="From colleague"),
    )

    assert run.succeeded, (run.report.counts(), run.problems)
    received = Counter(
        {
            (path[:1] + path[2:], name): count
            for (path, name), count in _by_folder(tenant, other).items()
            if path[1:2] == ("From colleague",)
        }
    )
    assert received == source

"""Per-mailbox workloads (calendar, contacts) treat leavers and unknown users as mail does."""

from __future__ import annotations

import asyncio

import pytest

from m365lake.backup_calendar import backup_calendars
from m365lake.backup_contacts import backup_contacts
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake

WORKLOADS = {"calendar": backup_calendars, "contacts": backup_contacts}


@pytest.fixture
def tenant() -> Tenant:
    return Tenant.from_seed(generate_tenant(seed=11, users=2, messages_per_user=1))


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_leaver_is_skipped_and_kept(
    workload: str, tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    backup = WORKLOADS[workload]
    upn = next(info.user.user_principal_name for info in tenant.users() if info.has_mailbox)
    # No mail backup first: a calendar or contacts run alone records the mailbox.
    first = asyncio.run(backup(emulator.settings(), lake, users=[upn]))
    assert [result.mailbox.user_principal_name for result in first.results] == [upn]

    tenant.delete_user(upn)
    second = asyncio.run(backup(emulator.settings(), lake, users=[upn]))

    assert second.results == []
    assert second.failed == {}
    assert "no longer in the directory" in second.skipped[upn]


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_unknown_user_fails_with_fix(workload: str, emulator: EmulatorServer, lake: Lake) -> None:
    summary = asyncio.run(
        WORKLOADS[workload](emulator.settings(), lake, users=["nobody@example.com"])
    )

    assert summary.results == []
    assert "check the user principal name" in summary.failed["nobody@example.com"]

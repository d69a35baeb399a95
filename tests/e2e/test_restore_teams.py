"""A restore that selects Teams channel messages plans them as unrestorable, with the reason."""

from __future__ import annotations

import asyncio
import json

import pytest

from m365lake.backup_teams import backup_teams
from m365lake.catalog import refresh_catalog
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator_teams import GeneratedThread, generate_teams
from m365lake.lake import Lake
from m365lake.restore.model import Outcome
from m365lake.restore.runner import restore
from m365lake.restore.selection import Selection
from tests.e2e.test_cli import m365lake


@pytest.fixture
def thread(tenant: Tenant, emulator: EmulatorServer, lake: Lake) -> GeneratedThread:
    generated = generate_teams(tenant)
    assert generated is not None
    summary = asyncio.run(backup_teams(emulator.settings(), lake))
    assert summary.failed == {}
    refresh_catalog(lake)
    return generated


def test_teams_selection_planned_unrestorable(
    emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    selection = Selection(item_ids=(thread.root_id, thread.edited_id), workloads=("teams",))
    run = asyncio.run(restore(lake, emulator.settings(), selection, actor="officer"))

    assert [item.planned.source_item_id for item in run.report.items] == [
        thread.root_id,
        thread.edited_id,
    ]
    for item in run.report.items:
        assert item.outcome is Outcome.UNRESTORABLE
        assert item.planned.workload == "teams"
        assert item.planned.target_path == thread.channel_id
        reason = item.planned.reason
        assert reason is not None
        assert "migration mode" in reason
        assert "m365lake export" in reason
    assert run.report.counts()["unrestorable"] == 2


def test_teams_restore_writes_nothing(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    author = tenant.users()[0].id
    emulator.app.state.requests.clear()
    run = asyncio.run(
        restore(
            lake,
            emulator.settings(),
            Selection(custodian=author, workloads=("teams",)),
            dry_run=False,
            actor="officer",
        )
    )

    assert run.report.items
    assert {item.outcome for item in run.report.items} == {Outcome.UNRESTORABLE}
    methods = {record.method for record in emulator.app.state.requests.snapshot()}
    assert methods <= {"GET"}
    posted_by = {item.planned.source_item_id for item in run.report.items}
    assert thread.root_id in posted_by


def test_mail_selection_leaves_teams_out(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    selection = Selection(item_ids=(thread.root_id,), workloads=("mail",))
    with pytest.raises(Exception, match="matches no archived item"):
        asyncio.run(restore(lake, emulator.settings(), selection, actor="officer"))


def test_restore_command_lists_teams_reason(
    emulator: EmulatorServer, lake: Lake, thread: GeneratedThread
) -> None:
    env = {**emulator.environment(), "M365LAKE_LAKE": str(lake.root)}
    result = m365lake(
        "restore", "--id", thread.root_id, "--workload", "teams", "--format", "json", env=env
    )

    assert result.returncode == 0, result.stderr + result.stdout
    document = json.loads(result.stdout)
    lines = document["items"]
    assert len(lines) == 1
    assert lines[0]["workload"] == "teams"
    assert lines[0]["outcome"] == "unrestorable"
    assert "migration mode" in lines[0]["reason"]

"""The retention commands, run through click's CliRunner."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner, Result

from m365lake import catalog
from m365lake.discovery.cli import register
from m365lake.lake import Lake
from m365lake.retention import list_policies
from tests.unit.discovery.workload_fixture import OTHER_TEAM_ID, OTHER_TEAM_NAME, seed_workloads


@pytest.fixture
def run(lake: Lake):  # type: ignore[no-untyped-def]
    @click.group()
    def main() -> None:
        """Stands in for the m365lake command."""

    register(main)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        # Commands that change the lake name who acts; the listing commands take no actor.
        actor = [] if args[-1] == "json" else ["--actor", "erin"]
        return runner.invoke(main, [*args, "--lake", str(lake.root), *actor])

    return invoke


def message_count(lake: Lake) -> int:
    return int(catalog.run_sql(lake, "SELECT count(*) FROM messages_rows")[1][0][0])


def test_policy_commands(run, lake: Lake) -> None:  # type: ignore[no-untyped-def]
    added = run(
        "retention",
        "add-policy",
        "bob mail",
        "--workload",
        "mail",
        "--action",
        "delete",
        "--days",
        "30",
        "--age-from",
        "deletion",
        "--mailbox",
        "mb-bob",
    )
    listed = run("retention", "policies", "--format", "json")
    removed = run("retention", "remove-policy", added.stdout.strip(), "--reason", "wrong scope")

    assert added.exit_code == 0, added.output
    [policy] = json.loads(listed.stdout)
    assert policy["basis"] == "deleted"
    assert policy["locations"] == ["mailbox:mb-bob"]
    assert removed.exit_code == 0, removed.output
    assert list_policies(lake) == []


def test_purge_dry_run_then_apply(run, lake: Lake) -> None:  # type: ignore[no-untyped-def]
    run(
        "retention",
        "add-policy",
        "all mail",
        "--workload",
        "mail",
        "--action",
        "delete",
        "--days",
        "0",
    )

    dry = run("retention", "purge", "--list")
    remaining_after_dry_run = message_count(lake)
    applied = run("retention", "purge", "--apply")

    assert dry.exit_code == 0, dry.output
    assert "would purge (dry run; --apply removes them): 5 versions" in dry.stderr
    assert "m1" in dry.stdout
    assert remaining_after_dry_run == 5
    assert applied.exit_code == 0, applied.output
    assert "purged: 5 versions" in applied.stderr
    assert message_count(lake) == 0


def test_purge_without_index_fails_clearly(run) -> None:  # type: ignore[no-untyped-def]
    run("case", "create", "Matter", "--id", "C")
    run("case", "add-custodian", "C", "--mailbox", "mb-bob")
    run("hold", "place", "C", "--query", "budget")
    run(
        "retention",
        "add-policy",
        "all mail",
        "--workload",
        "mail",
        "--action",
        "delete",
        "--days",
        "0",
    )

    result = run("retention", "purge", "--apply")

    assert result.exit_code == 1
    assert "Error:" in result.output
    assert "Traceback" not in result.output


def test_team_policy_purges_messages(run, lake: Lake) -> None:  # type: ignore[no-untyped-def]
    seed_workloads(lake)
    added = run(
        "retention",
        "add-policy",
        "lobby chatter",
        "--workload",
        "teams",
        "--action",
        "delete",
        "--days",
        "30",
        "--team",
        OTHER_TEAM_NAME,
    )
    mailbox_scope = run(
        "retention",
        "add-policy",
        "wrong scope",
        "--workload",
        "teams",
        "--action",
        "delete",
        "--days",
        "30",
        "--mailbox",
        "mb-bob",
    )
    applied = run("retention", "purge", "--apply")

    assert added.exit_code == 0, added.output
    [policy] = list_policies(lake)
    assert policy.locations == (f"team:{OTHER_TEAM_ID}",)
    assert mailbox_scope.exit_code == 1
    assert "a teams policy cannot apply to a mailbox location" in mailbox_scope.output
    assert applied.exit_code == 0, applied.output
    assert "purged: 1 versions" in applied.stderr
    assert "1 event attachment and message part rows" in applied.stderr

"""The restore runner: dry runs plan only, executions run and verify, every run is audited."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import pytest

from m365lake import catalog
from m365lake.config import GraphSettings
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.restore.ledger import RestoreLedger
from m365lake.restore.model import (
    ConflictPolicy,
    ItemResult,
    Outcome,
    PlannedItem,
    RestoreTarget,
    Severity,
    VerifyFinding,
)
from m365lake.restore.runner import WorkloadFunctions, restore
from m365lake.restore.selection import Selection, SelectionError
from tests.unit.test_restore_selection import lake as selection_lake  # noqa: F401

SETTINGS = GraphSettings(
    tenant_id="tenant", client_id="client", client_secret="secret", graph_url="https://g.test/v1.0"
)


class FakeMail:
    """Plans one line per message: m1 collides, the rest are created."""

    def __init__(self, *, fail_run: bool = False) -> None:
        self.fail_run = fail_run
        self.planned_rows: list[str] = []
        self.ran: list[str] = []
        self.as_of: datetime | None = None

    async def plan(
        self,
        lake: Lake,
        graph: GraphClient,
        rows: Any,
        target: RestoreTarget,
        policy: ConflictPolicy,
        ledger: RestoreLedger,
        *,
        as_of: datetime | None = None,
    ) -> list[PlannedItem]:
        self.as_of = as_of
        self.planned_rows = [row["message_id"] for row in rows]
        return [
            PlannedItem(
                "mail",
                row["mailbox_id"],
                row["message_id"],
                row["mime_sha256"],
                row["folder_path"],
                target.mailbox_id or row["mailbox_id"],
                row["folder_path"],
                "collision" if row["message_id"] == "m1" else "create",
                "live message live-1" if row["message_id"] == "m1" else None,
            )
            for row in rows
        ]

    async def run(
        self,
        lake: Lake,
        graph: GraphClient,
        plan: list[PlannedItem],
        *,
        restore_id: str,
        policy: ConflictPolicy,
        ledger: RestoreLedger,
    ) -> list[ItemResult]:
        if self.fail_run:
            raise RuntimeError("Graph went away")
        self.ran = [item.source_item_id for item in plan]
        return [
            ItemResult(
                item,
                Outcome.SKIPPED if item.action == "collision" else Outcome.CREATED,
                target_item_id=f"new-{item.source_item_id}",
            )
            for item in plan
        ]

    async def verify(
        self, lake: Lake, graph: GraphClient, results: list[ItemResult]
    ) -> list[VerifyFinding]:
        return [
            VerifyFinding("mail", "m2", "new-m2", "x-header", "a", "b", Severity.REWRITE),
        ]

    def functions(self) -> WorkloadFunctions:
        return WorkloadFunctions("mail", self.plan, self.run, self.verify)


def audit_rows(lake: Lake) -> list[tuple[str, dict[str, Any], dict[str, int]]]:
    rows = catalog.run_sql(
        lake, "SELECT action, parameters, counts FROM audit_events ORDER BY seq"
    )[1]
    return [
        (action, json.loads(parameters), json.loads(counts)) for action, parameters, counts in rows
    ]


def run_restore(lake: Lake, fake: FakeMail, **options: Any) -> Any:
    return asyncio.run(
        restore(
            lake,
            SETTINGS,
            options.pop("selection", Selection(folder="Inbox")),
            actor="officer",
            graph=cast(GraphClient, object()),
            workloads=[fake.functions()],
            **options,
        )
    )


def test_dry_run_plans_and_audits_without_running(selection_lake: Lake) -> None:  # noqa: F811
    fake = FakeMail()

    run = run_restore(selection_lake, fake)

    assert fake.planned_rows == ["m3", "m1", "m2", "m9"]
    assert fake.ran == []
    assert run.report.dry_run
    assert run.report.counts()["created"] == 3
    assert run.report.counts()["skipped"] == 1
    action, parameters, counts = audit_rows(selection_lake)[-1]
    assert action == "restore.plan"
    assert parameters["folder"] == "Inbox"
    assert parameters["policy"] == "skip"
    assert counts["created"] == 3


def test_execute_runs_verifies_and_audits(selection_lake: Lake) -> None:  # noqa: F811
    fake = FakeMail()

    run = run_restore(selection_lake, fake, dry_run=False, policy=ConflictPolicy.SKIP)

    assert fake.ran == ["m3", "m1", "m2", "m9"]
    assert run.succeeded
    assert len(run.findings) == 1
    assert run.problems == []
    action, _, counts = audit_rows(selection_lake)[-1]
    assert action == "restore"
    assert counts["verify_rewrites"] == 1
    assert counts["verify_problems"] == 0


def test_dry_run_passes_point_in_time(selection_lake: Lake) -> None:  # noqa: F811
    fake = FakeMail()
    moment = datetime.fromisoformat("2024-01-01T12:00:00+00:00")

    run_restore(selection_lake, fake, selection=Selection(folder="Inbox", as_of=moment))

    assert fake.as_of == moment


def test_failed_restore_is_audited_then_raised(selection_lake: Lake) -> None:  # noqa: F811
    with pytest.raises(RuntimeError, match="Graph went away"):
        run_restore(selection_lake, FakeMail(fail_run=True), dry_run=False)

    action, parameters, _ = audit_rows(selection_lake)[-1]
    assert action == "restore"
    assert parameters["error"] == "RuntimeError: Graph went away"


def test_selection_matching_nothing_is_rejected(selection_lake: Lake) -> None:  # noqa: F811
    with pytest.raises(SelectionError, match="matches no archived item"):
        run_restore(selection_lake, FakeMail(), selection=Selection(folder="Nope"))


def test_lake_without_items_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SelectionError):
        run_restore(Lake.open(tmp_path / "lake"), FakeMail(), selection=Selection(custodian="x"))

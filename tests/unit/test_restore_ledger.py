"""The restore ledger: lasting outcomes are found again, failed ones are not."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from m365lake import catalog
from m365lake.lake import Lake
from m365lake.restore.ledger import RestoreLedger, record
from m365lake.restore.model import (
    ConflictPolicy,
    ItemResult,
    Outcome,
    PlannedItem,
    RestoreReport,
    default_restore_folder,
    planned_outcome,
)


def planned(item_id: str, action: str = "create", target: str = "u1") -> PlannedItem:
    return PlannedItem(
        workload="mail",
        source_container="u1",
        source_item_id=item_id,
        source_version=f"sha-{item_id}",
        source_path="Inbox",
        target_container=target,
        target_path="Inbox",
        action=action,
    )


def test_recorded_items_are_found_after_reload(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "lake")
    record(
        lake,
        "restore-1",
        [
            ItemResult(planned("m1"), Outcome.CREATED, target_item_id="new-1"),
            ItemResult(planned("m2"), Outcome.FAILED, reason="413 too large"),
            ItemResult(planned("m3"), Outcome.SKIPPED, reason="collides with live-3"),
        ],
    )

    ledger = RestoreLedger.load(lake)

    assert ledger.find("mail", "u1", "m1", "sha-m1", "u1") == "new-1"
    assert ledger.find("mail", "u1", "m1", "sha-m1", "other-mailbox") is None
    assert ledger.find("mail", "u1", "m1", "sha-older", "u1") is None
    assert ledger.find("mail", "u1", "m2", "sha-m2", "u1") is None
    assert ledger.find("mail", "u1", "m3", "sha-m3", "u1") is None
    rows = catalog.run_sql(lake, "SELECT outcome FROM restore_ledger ORDER BY source_item_id")[1]
    assert rows == [("created",), ("failed",), ("skipped",)]


def test_empty_lake_has_empty_ledger(tmp_path: Path) -> None:
    assert len(RestoreLedger.load(Lake.open(tmp_path / "lake"))) == 0


def test_remember_makes_running_results_visible() -> None:
    ledger = RestoreLedger({})
    ledger.remember([ItemResult(planned("m1"), Outcome.RENAMED, target_item_id="copy-1")])

    assert ledger.find("mail", "u1", "m1", "sha-m1", "u1") == "copy-1"


def test_failure_after_create_is_found_unfinished(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "lake")
    record(
        lake,
        "restore-1",
        [
            ItemResult(planned("m1"), Outcome.FAILED, target_item_id="half-1", reason="400"),
            ItemResult(planned("m2"), Outcome.FAILED, reason="403"),
            ItemResult(planned("m3"), Outcome.FAILED, target_item_id="half-3", reason="400"),
        ],
    )
    record(lake, "restore-2", [ItemResult(planned("m3"), Outcome.CREATED, target_item_id="half-3")])

    ledger = RestoreLedger.load(lake)

    assert ledger.find_unfinished("mail", "u1", "m1", "sha-m1", "u1") == "half-1"
    assert ledger.find("mail", "u1", "m1", "sha-m1", "u1") is None
    assert ledger.find_unfinished("mail", "u1", "m2", "sha-m2", "u1") is None
    assert ledger.find_unfinished("mail", "u1", "m3", "sha-m3", "u1") is None
    assert ledger.find("mail", "u1", "m3", "sha-m3", "u1") == "half-3"


def test_dry_run_outcomes_follow_policy() -> None:
    collision = planned("m1", action="collision")

    assert planned_outcome(collision, ConflictPolicy.SKIP) is Outcome.SKIPPED
    assert planned_outcome(collision, ConflictPolicy.RENAME) is Outcome.RENAMED
    assert planned_outcome(collision, ConflictPolicy.REPLACE) is Outcome.REPLACED
    assert planned_outcome(planned("m2"), ConflictPolicy.SKIP) is Outcome.CREATED
    assert planned_outcome(planned("m3", "complete"), ConflictPolicy.SKIP) is Outcome.CREATED
    assert planned_outcome(planned("m4", "failed"), ConflictPolicy.SKIP) is Outcome.FAILED


def test_report_counts_every_outcome() -> None:
    report = RestoreReport("r", dry_run=True, policy=ConflictPolicy.SKIP)
    report.items.append(ItemResult(planned("m1"), Outcome.CREATED))

    counts = report.counts()

    assert counts["created"] == 1
    assert counts["failed"] == 0
    assert set(counts) == {outcome.value for outcome in Outcome}


def test_default_folder_name_is_safe_for_sharepoint() -> None:
    name = default_restore_folder(datetime(2026, 12, 5, 2, 30, tzinfo=UTC))

    assert name == "Restored 2026-12-05 02-30-00 UTC"

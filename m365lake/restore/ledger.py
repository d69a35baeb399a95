"""The restore ledger: which archived version a restore put where, kept in the lake.

A restore looks up the ledger before creating anything, so running it again creates nothing
new. The ledger is written in batches while a restore runs. An item created just before a
kill is missing from it, so the planners also compare with the live tenant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from m365lake.discovery.commit_loop import commit_with_retry
from m365lake.discovery.lake_rows import latest_rows
from m365lake.lake import Lake, Transaction
from m365lake.restore.model import ItemResult, Outcome

LEDGER_TABLE = "restore_ledger"

# Outcomes that leave an item at the target which a later restore must not create again.
_LASTING = frozenset({Outcome.CREATED, Outcome.REPLACED, Outcome.RENAMED, Outcome.ALREADY_PRESENT})

LedgerKey = tuple[str, str, str, str, str]
"""(workload, source container, source item id, source version, target container)."""


class RestoreLedger:
    """The target item of every archived version restored before, by ledger key."""

    def __init__(
        self, entries: dict[LedgerKey, str], unfinished: dict[LedgerKey, str] | None = None
    ) -> None:
        self._entries = entries
        self._unfinished = unfinished or {}

    @classmethod
    def load(cls, lake: Lake) -> RestoreLedger:
        """Read the committed ledger of ``lake``; an empty ledger when nothing was restored."""
        keys = [
            "workload",
            "source_container",
            "source_item_id",
            "source_version",
            "target_container",
        ]
        rows = latest_rows(lake, LEDGER_TABLE, keys, [*keys, "target_item_id", "outcome"])
        entries = {
            (
                row["workload"],
                row["source_container"],
                row["source_item_id"],
                row["source_version"],
                row["target_container"],
            ): row["target_item_id"]
            for row in rows
            if row["outcome"] in _LASTING and row["target_item_id"]
        }
        unfinished = {
            (
                row["workload"],
                row["source_container"],
                row["source_item_id"],
                row["source_version"],
                row["target_container"],
            ): row["target_item_id"]
            for row in rows
            if row["outcome"] == Outcome.FAILED and row["target_item_id"]
        }
        return cls(entries, unfinished)

    def __len__(self) -> int:
        return len(self._entries)

    def find(
        self,
        workload: str,
        source_container: str,
        source_item_id: str,
        source_version: str,
        target_container: str,
    ) -> str | None:
        """Return the target item id an earlier restore created for this version, if any."""
        return self._entries.get(
            (workload, source_container, source_item_id, source_version, target_container)
        )

    def find_unfinished(
        self,
        workload: str,
        source_container: str,
        source_item_id: str,
        source_version: str,
        target_container: str,
    ) -> str | None:
        """Return the target item an earlier restore created but failed to complete, if any.

        Such an item is in the tenant (a series without its exceptions, an event without
        its attachments), and the latest ledger row of this version is its failure.
        """
        return self._unfinished.get(
            (workload, source_container, source_item_id, source_version, target_container)
        )

    def remember(self, results: Sequence[ItemResult]) -> None:
        """Add results of the running restore, so later lookups in the same run find them."""
        for result in results:
            if result.outcome in _LASTING and result.target_item_id:
                self._entries[_key(result)] = result.target_item_id
                self._unfinished.pop(_key(result), None)
            elif result.outcome is Outcome.FAILED and result.target_item_id:
                self._unfinished[_key(result)] = result.target_item_id


def _key(result: ItemResult) -> LedgerKey:
    planned = result.planned
    return (
        planned.workload,
        planned.source_container,
        planned.source_item_id,
        planned.source_version,
        planned.target_container,
    )


def ledger_rows(restore_id: str, results: Sequence[ItemResult]) -> list[dict[str, Any]]:
    """Return the ledger rows of ``results``; items not tried (a dry run) have none."""
    return [
        {
            "restore_id": restore_id,
            "workload": result.planned.workload,
            "source_container": result.planned.source_container,
            "source_item_id": result.planned.source_item_id,
            "source_version": result.planned.source_version,
            "source_path": result.planned.source_path,
            "target_container": result.planned.target_container,
            "target_path": result.planned.target_path,
            "target_item_id": result.target_item_id,
            "outcome": result.outcome.value,
            "reason": result.reason,
        }
        for result in results
    ]


def record(lake: Lake, restore_id: str, results: Sequence[ItemResult]) -> None:
    """Commit the ledger rows of ``results``; call it every few hundred items and at the end."""
    rows = ledger_rows(restore_id, results)
    if not rows:
        return

    def work(tx: Transaction) -> tuple[None, dict[str, int]]:
        tx.write_rows(LEDGER_TABLE, rows, partition={})
        return None, {"restore_ledger_rows": len(rows)}

    commit_with_retry(lake, kind="restore", container=None, work=work)

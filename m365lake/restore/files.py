"""Restore archived OneDrive and SharePoint files: the plan, run and verify entry points.

The restore runner calls these three in order. The work lives in ``files_plan``,
``files_execute``, ``files_upload`` and ``files_verify``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.restore.files_execute import execute_files
from m365lake.restore.files_plan import FilePlan, plan_files
from m365lake.restore.files_verify import verify_files
from m365lake.restore.ledger import RestoreLedger
from m365lake.restore.model import (
    ConflictPolicy,
    ItemResult,
    PlannedItem,
    RestoreTarget,
    VerifyFinding,
)

__all__ = ["FilePlan", "plan_files_restore", "run_files_restore", "verify_files_restore"]


async def plan_files_restore(
    lake: Lake,
    graph: GraphClient,
    rows: Sequence[dict[str, Any]],
    target: RestoreTarget,
    policy: ConflictPolicy,
    ledger: RestoreLedger,
    *,
    as_of: datetime | None = None,
) -> list[PlannedItem]:
    """Plan where each archived drive item row goes; ask the live tenant for collisions.

    Nothing is written. ``rows`` come from ``select_files`` and ``as_of`` is the
    selection's point in time, used to find the archived folders above the rows.
    """
    return list(await plan_files(lake, graph, rows, target, policy, ledger, as_of=as_of))


async def run_files_restore(
    lake: Lake,
    graph: GraphClient,
    plan: list[PlannedItem],
    *,
    restore_id: str,
    policy: ConflictPolicy,
    ledger: RestoreLedger,
) -> list[ItemResult]:
    """Carry out a plan from ``plan_files_restore``; the ledger is committed as it goes."""
    return await execute_files(
        lake, graph, plan, restore_id=restore_id, policy=policy, ledger=ledger
    )


async def verify_files_restore(
    lake: Lake, graph: GraphClient, results: list[ItemResult]
) -> list[VerifyFinding]:
    """Read the restored items back and compare them with the archive."""
    return await verify_files(lake, graph, results)

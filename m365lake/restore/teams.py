"""Teams channel messages in a restore: selected and planned, but never posted back.

Graph cannot add archived messages to an existing channel. Importing history with the
original authors and times works only through migration mode: ``startMigration`` on a
channel, posts with ``from`` and ``createdDateTime`` under the Teamwork.Migrate.All
application permission, then ``completeMigration``. m365lake does not do that import, so
every selected message becomes a plan line with that reason and a pointer to an export.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from m365lake.catalog import connect
from m365lake.discovery.custodians import resolve_custodian
from m365lake.discovery.errors import CustodianNotFoundError
from m365lake.discovery.search_api import search_hits
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.restore.ledger import RestoreLedger
from m365lake.restore.model import (
    ConflictPolicy,
    ItemResult,
    Outcome,
    PlannedItem,
    RestoreTarget,
    VerifyFinding,
)
from m365lake.restore.selection import Selection, check_selection

logger = logging.getLogger(__name__)

WORKLOAD = "teams"
NOT_RESTORABLE = (
    "Graph cannot post archived messages into an existing Teams channel; only a channel "
    "in migration mode (startMigration, Teamwork.Migrate.All) accepts imported history, "
    "and m365lake does not import. Export the thread instead: add the team to a case as a "
    "custodian and run `m365lake export`, which writes each thread as HTML and JSON"
)


def wants_teams(selection: Selection) -> bool:
    """Return whether the selection can pick Teams messages at all.

    Mail folder and drive criteria name other workloads, and a selection that names
    workloads without ``teams`` excludes them.
    """
    if selection.workloads and WORKLOAD not in selection.workloads:
        return False
    if selection.folder is not None or selection.path is not None or selection.drive_id:
        return False
    return bool(selection.kql or selection.item_ids or selection.custodian)


def _versions(lake: Lake, as_of: datetime | None) -> list[dict[str, Any]]:
    with connect(lake) as db:
        tables = {row[0] for row in db.execute("SELECT view_name FROM duckdb_views()").fetchall()}
        if "channel_message_versions" not in tables:
            return []
        if as_of is None:
            cursor = db.execute(
                "SELECT * FROM channel_message_versions QUALIFY row_number() OVER "
                "(PARTITION BY team_id, channel_id, message_id ORDER BY captured_at DESC) = 1"
            )
        else:
            cursor = db.execute("SELECT * FROM channel_messages_as_of(?)", [as_of])
        names = [column[0] for column in cursor.description or []]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def select_channel_messages(lake: Lake, selection: Selection) -> list[dict[str, Any]]:
    """Return the archived channel message rows the selection picks, thread by thread.

    A custodian picks the messages that user posted.
    """
    check_selection(selection)
    if not wants_teams(selection):
        return []
    author = None
    if selection.custodian:
        try:
            author = resolve_custodian(lake, "mailbox", selection.custodian).container_id
        except CustodianNotFoundError:
            # Without an archived mailbox the custodian can still be given as a user id,
            # which is what a message's ``from`` carries.
            author = selection.custodian
    matched = None
    if selection.kql:
        matched = {
            (hit.container_id, hit.item_id)
            for hit in search_hits(lake, selection.kql, purpose="the restore --kql")
            if hit.workload == WORKLOAD
        }
    ids = set(selection.item_ids)
    rows = []
    for row in _versions(lake, selection.as_of):
        if author is not None and row.get("from_user_id") != author:
            continue
        if ids and row["message_id"] not in ids:
            continue
        if matched is not None and (row["channel_id"], row["message_id"]) not in matched:
            continue
        rows.append(row)
    rows.sort(
        key=lambda row: (
            row["team_id"],
            row["channel_id"],
            row.get("reply_to_id") or row["message_id"],
            row["message_id"],
        )
    )
    logger.info("restore selection picked %d Teams channel messages", len(rows))
    return rows


async def plan_teams_restore(
    lake: Lake,
    graph: GraphClient,
    rows: Sequence[dict[str, Any]],
    target: RestoreTarget,
    policy: ConflictPolicy,
    ledger: RestoreLedger,
    *,
    as_of: datetime | None = None,
) -> list[PlannedItem]:
    """Return one ``unrestorable`` plan line per selected message; Graph is not called."""
    return [
        PlannedItem(
            workload=WORKLOAD,
            source_container=str(row["team_id"]),
            source_item_id=str(row["message_id"]),
            source_version=str(row.get("json_sha256") or row.get("etag") or ""),
            source_path=f"{row['channel_id']}/{row.get('reply_to_id') or row['message_id']}",
            target_container=str(row["team_id"]),
            target_path=str(row["channel_id"]),
            action="unrestorable",
            reason=NOT_RESTORABLE,
        )
        for row in rows
    ]


async def run_teams_restore(
    lake: Lake,
    graph: GraphClient,
    plan: list[PlannedItem],
    *,
    restore_id: str,
    policy: ConflictPolicy,
    ledger: RestoreLedger,
) -> list[ItemResult]:
    """Report every planned message as unrestorable, without writing to the tenant."""
    return [ItemResult(item, Outcome.UNRESTORABLE, reason=item.reason) for item in plan]


async def verify_teams_restore(
    lake: Lake, graph: GraphClient, results: Sequence[ItemResult]
) -> list[VerifyFinding]:
    """Return no findings: nothing was written, so there is nothing to compare."""
    return []

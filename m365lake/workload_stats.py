"""Archive totals per workload and open coverage gaps, for the archive overview.

The figures match ``queries/archived_per_workload.sql`` and count the gaps as
``queries/coverage_gaps.sql`` does: an item whose newest failure is later than its
newest archived version with content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from m365lake.archive_stats import format_bytes
from m365lake.catalog import connect
from m365lake.lake import Lake

WORKLOADS = ("mail", "files", "calendar", "contacts", "teams")

# ``failure_container`` is the container a failures row names for the item: the mailbox
# for mail, calendar and contacts, the drive for files and the team for Teams.
_SQL = """
WITH versions AS (
    SELECT 'mail' AS workload, mailbox_id AS container_id, mailbox_id AS failure_container,
        message_id AS item_id, change, captured_at, size,
        mime_sha256 IS NOT NULL AS has_content, commit_seq, file_index, row_index
    FROM messages_rows
    UNION ALL
    SELECT 'files', drive_id, drive_id, item_id, change, captured_at, size,
        content_sha256 IS NOT NULL, commit_seq, file_index, row_index
    FROM drive_items_rows
    WHERE NOT coalesce(is_folder, false)
    UNION ALL
    SELECT 'calendar', mailbox_id, mailbox_id, event_id, change, captured_at, size,
        change <> 'deleted', commit_seq, file_index, row_index
    FROM events_rows
    UNION ALL
    SELECT 'contacts', mailbox_id, mailbox_id, contact_id, change, captured_at, size,
        change <> 'deleted', commit_seq, file_index, row_index
    FROM contacts_rows
    UNION ALL
    SELECT 'teams', channel_id, team_id, message_id, change, captured_at, size,
        change <> 'deleted', commit_seq, file_index, row_index
    FROM channel_messages_rows
),
newest AS (
    SELECT workload, container_id, change
    FROM versions
    QUALIFY row_number() OVER (
        PARTITION BY workload, container_id, item_id
        ORDER BY captured_at DESC, commit_seq DESC, file_index DESC, row_index DESC
    ) = 1
),
items AS (
    SELECT workload, count(DISTINCT container_id) AS containers,
        count(*) FILTER (WHERE change <> 'deleted') AS live_items,
        count(*) FILTER (WHERE change = 'deleted') AS deleted_in_tenant
    FROM newest
    GROUP BY workload
),
kept AS (
    SELECT workload, count(*) AS versions, coalesce(sum(size), 0) AS version_bytes,
        max(captured_at) AS last_captured
    FROM versions
    WHERE change <> 'deleted'
    GROUP BY workload
),
latest_failure AS (
    SELECT workload, coalesce(mailbox_id, container_id) AS failure_container, item_id,
        captured_at
    FROM failures
    WHERE item_id IS NOT NULL
    QUALIFY row_number() OVER (
        PARTITION BY workload, coalesce(mailbox_id, container_id), item_id
        ORDER BY captured_at DESC
    ) = 1
),
archived AS (
    SELECT workload, failure_container, item_id, max(captured_at) AS last_archived
    FROM versions
    WHERE has_content
    GROUP BY ALL
),
gaps AS (
    SELECT f.workload, count(*) AS open_gaps
    FROM latest_failure AS f
    LEFT JOIN archived AS a USING (workload, failure_container, item_id)
    WHERE a.last_archived IS NULL OR a.last_archived < f.captured_at
    GROUP BY f.workload
)
SELECT
    w.workload,
    coalesce(i.containers, 0),
    coalesce(i.live_items, 0),
    coalesce(i.deleted_in_tenant, 0),
    coalesce(k.versions, 0),
    coalesce(k.version_bytes, 0),
    k.last_captured,
    coalesce(g.open_gaps, 0)
FROM (SELECT unnest($workloads) AS workload, generate_subscripts($workloads, 1) AS position)
    AS w
LEFT JOIN items AS i USING (workload)
LEFT JOIN kept AS k USING (workload)
LEFT JOIN gaps AS g USING (workload)
ORDER BY w.position
"""


@dataclass(frozen=True)
class WorkloadTotals:
    """Archived containers, items, versions and open gaps of one workload."""

    workload: str
    containers: int
    """Mailboxes, drives or Teams channels with at least one archived item."""
    live_items: int
    """Items whose newest archived version is not a deletion."""
    deleted_in_tenant: int
    versions: int
    """Archived versions, deletions left out."""
    version_bytes: int
    last_captured: datetime | None
    open_gaps: int
    """Items whose newest failure is later than their newest archived version."""


def workload_totals(lake: Lake) -> list[WorkloadTotals]:
    """Return the totals of every workload, in ``WORKLOADS`` order, zero for an empty one."""
    with connect(lake) as db:
        rows = db.execute(_SQL, {"workloads": list(WORKLOADS)}).fetchall()
    return [
        WorkloadTotals(
            workload=str(row[0]),
            containers=int(row[1]),
            live_items=int(row[2]),
            deleted_in_tenant=int(row[3]),
            versions=int(row[4]),
            version_bytes=int(row[5]),
            last_captured=row[6],
            open_gaps=int(row[7]),
        )
        for row in rows
    ]


def workload_markdown(totals: Sequence[WorkloadTotals]) -> str:
    """Render the totals as a Markdown table, one row per workload."""
    lines = [
        "| workload | containers | live items | deleted in tenant | versions | bytes "
        "| last captured (UTC) | open gaps |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for total in totals:
        captured = total.last_captured.isoformat(timespec="seconds") if total.last_captured else ""
        lines.append(
            f"| {total.workload} | {total.containers:,} | {total.live_items:,} "
            f"| {total.deleted_in_tenant:,} | {total.versions:,} "
            f"| {format_bytes(total.version_bytes)} | {captured} | {total.open_gaps:,} |"
        )
    return "\n".join(lines)

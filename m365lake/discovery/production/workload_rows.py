"""Read the versions that calendar, contacts and Teams productions are made from.

A production shows each item as its latest archived version that is not a deletion, as
the search index chose it, with ``deleted_at`` set when the tenant deleted the item
later. The same rule picks the hit items and the other members of their families: the
exceptions of a recurring series, the replies of a Teams thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa

from m365lake.lake import Lake, reading
from m365lake.lake.transaction import partition_directory


@dataclass(frozen=True)
class WorkloadTable:
    """The table, key columns and partition columns of one workload's items."""

    table: str
    container: str
    """The key column of the item's container: the mailbox, or the Teams channel."""
    item: str
    partition: tuple[str, ...]
    """The partition columns of the table's files."""
    removed: str = "change = 'deleted'"
    """SQL: the version hides its item, whose production keeps the version before it."""
    removed_at: str = "coalesce(row_deleted_at, captured_at)"
    """SQL: when the item was removed, for a version that ``removed`` matches."""


WORKLOAD_TABLES: Mapping[str, WorkloadTable] = {
    "calendar": WorkloadTable("events", "mailbox_id", "event_id", ("mailbox_id",)),
    "contacts": WorkloadTable("contacts", "mailbox_id", "contact_id", ("mailbox_id",)),
    # Teams keeps a message a user deleted, with its body emptied: as in the search index,
    # the production shows the text of the version before, marked deleted.
    "teams": WorkloadTable(
        "channel_messages",
        "channel_id",
        "message_id",
        ("team_id",),
        removed="change = 'deleted' OR soft_deleted_at IS NOT NULL",
        removed_at="coalesce(row_deleted_at, soft_deleted_at, captured_at)",
    ),
}
"""The workloads whose items are produced from Graph's JSON through a renderer."""

_OPTIONS = (
    "filename = true, file_row_number = true, hive_partitioning = false, union_by_name = true"
)


def _entries(lake: Lake, table: str, partition: Mapping[str, str] | None) -> list[Any]:
    entries = lake.committed_entries(table)
    if partition is None:
        return list(entries)
    folder = PurePosixPath(partition_directory(table, partition))
    return [entry for entry in entries if folder in PurePosixPath(entry["path"]).parents]


def latest_versions(
    lake: Lake,
    workload: str,
    *,
    keys: Sequence[tuple[str, str]] | None = None,
    partition: Mapping[str, str] | None = None,
    where: str = "true",
    parameters: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Return the latest non-deletion version of each chosen item of ``workload``.

    Items are chosen by (container, item) ``keys``, or by the SQL condition ``where``
    over the table's columns (with named ``parameters``) inside ``partition``. Each row
    carries ``deleted_at`` (the first deletion recorded after it, else None), and
    ``filename`` (the file's manifest entry) and ``file_row_number`` that locate it. A
    Teams message first captured after its deletion has only its deleted version, which
    is returned with its own deletion time.
    """
    spec = WORKLOAD_TABLES[workload]
    scan = reading.TableScan(lake, _entries(lake, spec.table, partition))
    if not scan or keys == []:
        return []
    key_join = ""
    if keys is not None:
        key_join = (
            f"SEMI JOIN wanted AS w ON t.{spec.container} = w.container_id "
            f"AND t.{spec.item} = w.item_id"
        )
    query = f"""
        WITH versions AS (
            SELECT * EXCLUDE (deleted_at), deleted_at AS row_deleted_at,
                   list_position($files, filename) AS file_pos
            FROM {{source}} AS t
            {key_join}
            WHERE {where}
        ),
        marked AS (
            SELECT *, first_value(CASE WHEN {spec.removed} THEN {spec.removed_at} END
                                  IGNORE NULLS)
                OVER (PARTITION BY {spec.container}, {spec.item}
                      ORDER BY captured_at, file_pos, file_row_number
                      ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS deleted_at,
                ({spec.removed}) AS removed
            FROM versions
        )
        SELECT * EXCLUDE (row_deleted_at, file_pos, removed) FROM marked
        WHERE change <> 'deleted'
        QUALIFY row_number() OVER (
            PARTITION BY {spec.container}, {spec.item}
            ORDER BY removed, captured_at DESC, file_pos DESC, file_row_number DESC) = 1
    """
    with reading.connect(lake) as connection, scan.errors():
        if keys is not None:
            wanted = pa.table(
                {
                    "container_id": [container for container, _ in keys],
                    "item_id": [item for _, item in keys],
                }
            )
            connection.register("wanted", wanted)
        source = scan.sql(_OPTIONS, connection=connection)
        cursor = connection.execute(
            query.replace("{source}", source), {"files": scan.locations, **(parameters or {})}
        )
        names = [column[0] for column in cursor.description or []]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    entries = dict(zip(scan.locations, scan.entries, strict=True))
    for row in rows:
        row["filename"] = entries[row["filename"]]
    return rows


def series_members(lake: Lake, master: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return a series master's latest version followed by its exceptions, by start.

    Occurrences that follow the pattern unchanged are left out, because the master's
    recurrence rule describes them.
    """
    master_id = str(master["event_id"])
    rows = latest_versions(
        lake,
        "calendar",
        partition={"mailbox_id": str(master["mailbox_id"])},
        where="(event_id = $master OR series_master_id = $master) "
        "AND coalesce(event_type, '') <> 'occurrence'",
        parameters={"master": master_id},
    )
    rows.sort(
        key=lambda row: (
            row["event_id"] != master_id,
            row.get("original_start") or row.get("start_at") or row["captured_at"],
            row["event_id"],
        )
    )
    return rows


def thread_members(lake: Lake, root: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return a Teams thread's root message and its replies, in the order they were posted."""
    root_id = str(root["message_id"])
    rows = latest_versions(
        lake,
        "teams",
        partition={"team_id": str(root["team_id"])},
        where="channel_id = $channel AND (message_id = $root OR reply_to_id = $root)",
        parameters={"root": root_id, "channel": str(root["channel_id"])},
    )
    rows.sort(
        key=lambda row: (
            row["message_id"] != root_id,
            row.get("created_at") or row["captured_at"],
            row["message_id"],
        )
    )
    return rows

"""Read the attachment rows of one captured event version, for its search document."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from m365lake.lake import Lake, reading
from m365lake.lake.transaction import partition_directory

_OPTIONS = (
    "hive_partitioning = false, union_by_name = true, filename = true, file_row_number = true"
)
_SQL = """
    SELECT attachment_id, name, content_type, size, content_sha256
    FROM {source}
    WHERE mailbox_id = $mailbox AND event_id = $event AND run_id = $run
    QUALIFY row_number() OVER (
        PARTITION BY attachment_id
        ORDER BY captured_at DESC, list_position($files, filename) DESC, file_row_number DESC
    ) = 1
    ORDER BY name, attachment_id
"""


def event_attachments(lake: Lake, event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the ``event_attachments`` rows that the run of ``event`` captured with it.

    A backup writes an event version and its attachments in one run, so ``run_id``
    joins them. Only the files of the event's mailbox partition are read.

    NOTE: this reads the mailbox's attachment files once per event that has
    attachments, which is slow for a mailbox with many such events.
    """
    folder = PurePosixPath(
        partition_directory("event_attachments", {"mailbox_id": str(event["mailbox_id"])})
    )
    scan = reading.TableScan(
        lake,
        [
            entry
            for entry in lake.committed_entries("event_attachments")
            if folder in PurePosixPath(entry["path"]).parents
        ],
    )
    if not scan:
        return []
    parameters = {
        "files": scan.locations,
        "mailbox": event["mailbox_id"],
        "event": event["event_id"],
        "run": event["run_id"],
    }
    with reading.connect(lake) as connection, scan.errors():
        cursor = connection.execute(
            _SQL.format(source=scan.sql(_OPTIONS, connection=connection)), parameters
        )
        names = [column[0] for column in cursor.description or []]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]

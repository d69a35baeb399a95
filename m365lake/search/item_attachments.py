"""Read the attachment rows of one captured event version, for its search document."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb

from m365lake.lake import Lake
from m365lake.lake.transaction import partition_directory
from m365lake.search.changes import raise_read_error

_SQL = """
    SELECT attachment_id, name, content_type, size, content_sha256
    FROM read_parquet($files, hive_partitioning = false, union_by_name = true,
                      filename = true, file_row_number = true)
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
    prefix = partition_directory("event_attachments", {"mailbox_id": str(event["mailbox_id"])})
    files = [
        str(path)
        for path in lake.committed_files("event_attachments")
        if f"/{prefix}/" in f"/{path.relative_to(lake.root).as_posix()}"
    ]
    if not files:
        return []
    parameters = {
        "files": files,
        "mailbox": event["mailbox_id"],
        "event": event["event_id"],
        "run": event["run_id"],
    }
    try:
        with duckdb.connect() as connection:
            cursor = connection.execute(_SQL, parameters)
            names = [column[0] for column in cursor.description or []]
            return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    except duckdb.Error as error:
        raise_read_error([Path(path) for path in files], error)

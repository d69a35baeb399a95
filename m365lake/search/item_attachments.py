"""Read the attachment rows of one captured event version, for its search document."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from m365lake.lake import Lake, reading
from m365lake.lake.transaction import partition_directory

_OPTIONS = (
    "hive_partitioning = false, union_by_name = true, filename = true, file_row_number = true"
)
_SQL = """
    SELECT event_id, run_id, attachment_id, name, content_type, size, content_sha256
    FROM {source}
    WHERE mailbox_id = $mailbox
    QUALIFY row_number() OVER (
        PARTITION BY event_id, run_id, attachment_id
        ORDER BY captured_at DESC, list_position($files, filename) DESC, file_row_number DESC
    ) = 1
    ORDER BY event_id, run_id, name, attachment_id
"""

AttachmentRows = Mapping[tuple[str, str], tuple[dict[str, Any], ...]]


def event_attachments(lake: Lake, event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the ``event_attachments`` rows that the run of ``event`` captured with it.

    A backup writes an event version and its attachments in one run, so ``run_id``
    joins them. The attachment rows of a mailbox are read once per lake commit and kept
    for the mailbox's other events, because an index update reads a mailbox's events
    together.
    """
    found = _mailbox_attachments(lake, str(event["mailbox_id"]), lake.head().seq)
    rows = found.get((str(event["event_id"]), str(event["run_id"])), ())
    return [dict(row) for row in rows]


@functools.lru_cache(maxsize=16)
def _mailbox_attachments(lake: Lake, mailbox_id: str, head_seq: int) -> AttachmentRows:
    """Return one mailbox's attachment rows by (event, run), as of commit ``head_seq``."""
    folder = PurePosixPath(partition_directory("event_attachments", {"mailbox_id": mailbox_id}))
    scan = reading.TableScan(
        lake,
        [
            entry
            for entry in lake.committed_entries("event_attachments")
            if folder in PurePosixPath(entry["path"]).parents
        ],
    )
    if not scan:
        return {}
    parameters = {"files": scan.locations, "mailbox": mailbox_id}
    with reading.connect(lake) as connection, scan.errors():
        source = scan.sql(_OPTIONS, connection=connection)
        cursor = connection.execute(_SQL.format(source=source), parameters)
        names = [column[0] for column in cursor.description or []]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        key = (str(row.pop("event_id")), str(row.pop("run_id")))
        grouped.setdefault(key, []).append(row)
    return {key: tuple(members) for key, members in grouped.items()}

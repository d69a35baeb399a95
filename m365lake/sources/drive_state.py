"""The archived state of one drive: the latest version of each item.

A backup compares Graph's changes against this to write a version only when something
changed, to reuse archived content whose hash did not change, and to turn deleted
facets and resyncs into deletions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from m365lake.lake import Lake, reading
from m365lake.lake.reading import TableScan
from m365lake.lake.transaction import partition_directory
from m365lake.sources.drive_rows import quickxor_of

LOOKUP_BATCH = 1000
"""Ids per DuckDB query when reading archived rows back."""


@dataclass(frozen=True)
class KnownItem:
    """The latest archived version of a drive item."""

    parent_id: str | None
    name: str | None
    path: str | None
    is_folder: bool
    deleted: bool
    etag: str | None
    ctag: str | None
    size: int | None
    quickxor_hash: str | None
    content_sha256: str | None


def drive_files(lake: Lake, drive_id: str) -> TableScan:
    """Return the committed ``drive_items`` files of ``drive_id``."""
    directory = partition_directory("drive_items", {"drive_id": drive_id})
    entries = [
        entry
        for entry in lake.committed_entries("drive_items")
        if entry["path"].startswith(directory + "/")
    ]
    return TableScan(lake, entries)


# Files are passed in commit order, so the file position and row number order versions
# captured at the same instant.
_NEWEST_FIRST = (
    "QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY captured_at DESC, "
    "list_position($files, filename) DESC, file_row_number DESC) = 1"
)
_OPTIONS = (
    "hive_partitioning = false, union_by_name = true, filename = true, file_row_number = true"
)
_LATEST = (
    "SELECT item_id, parent_id, name, path, coalesce(is_folder, false), change = 'deleted', "
    f"etag, ctag, size, quickxor_hash, content_sha256 FROM {{source}} {_NEWEST_FIRST}"
)
_LATEST_ROWS = (
    "SELECT * EXCLUDE (filename, file_row_number) FROM {source} "
    f"WHERE list_contains($ids, item_id) {_NEWEST_FIRST}"
)


def load_drive_state(lake: Lake, drive_id: str) -> dict[str, KnownItem]:
    """Read the latest committed version of every item of ``drive_id``, keyed by item id."""
    files = drive_files(lake, drive_id)
    if not files:
        return {}
    with reading.connect(lake) as db, files.errors():
        query = _LATEST.format(source=files.sql(_OPTIONS, connection=db))
        rows = db.execute(query, {"files": files.locations}).fetchall()
    return {
        row[0]: KnownItem(
            parent_id=row[1],
            name=row[2],
            path=row[3],
            is_folder=bool(row[4]),
            deleted=bool(row[5]),
            etag=row[6],
            ctag=row[7],
            size=row[8],
            quickxor_hash=row[9],
            content_sha256=row[10],
        )
        for row in rows
    }


def _batches(values: Iterable[str]) -> Iterable[list[str]]:
    batch: list[str] = []
    for value in values:
        batch.append(value)
        if len(batch) >= LOOKUP_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def latest_rows(lake: Lake, drive_id: str, item_ids: Iterable[str]) -> Iterable[dict[str, Any]]:
    """Yield the latest archived row of each of ``item_ids``, a batch at a time."""
    files = drive_files(lake, drive_id)
    if not files:
        return
    with reading.connect(lake) as db:
        query = _LATEST_ROWS.format(source=files.sql(_OPTIONS, connection=db))
        for batch in _batches(item_ids):
            with files.errors():
                cursor = db.execute(query, {"files": files.locations, "ids": batch})
                names = [column[0] for column in cursor.description or []]
                rows = cursor.fetchall()
            for values in rows:
                yield dict(zip(names, values, strict=True))


def inline_content(lake: Lake, drive_id: str, hashes: Iterable[str]) -> dict[str, bytes]:
    """Return archived inline content by SHA-256, for new versions whose content is unchanged."""
    files = drive_files(lake, drive_id)
    found: dict[str, bytes] = {}
    if not files:
        return found
    with reading.connect(lake) as db:
        source = files.sql("hive_partitioning = false, union_by_name = true", connection=db)
        query = (
            f"SELECT content_sha256, any_value(content_inline) FROM {source} "
            "WHERE content_inline IS NOT NULL AND list_contains($hashes, content_sha256) "
            "GROUP BY content_sha256"
        )
        for batch in _batches(hashes):
            with files.errors():
                rows = db.execute(query, {"hashes": batch}).fetchall()
            for digest, data in rows:
                found[digest] = bytes(data)
    return found


def content_unchanged(known: KnownItem | None, item: dict[str, Any]) -> bool:
    """Return whether ``item`` has the archived version's content, by cTag, size and hash.

    OneDrive for Business omits cTag on some changes and hashes can be missing until
    processed, so each of cTag and QuickXorHash is compared when both sides have it, and
    at least one of them must match.
    """
    if known is None or known.deleted or known.content_sha256 is None:
        return False
    if known.size != item.get("size"):
        return False
    compared = False
    pairs = (
        (known.ctag, item.get("cTag")),
        (known.quickxor_hash, quickxor_of(item)),
    )
    for archived, current in pairs:
        if archived is not None and current is not None:
            if archived != current:
                return False
            compared = True
    return compared

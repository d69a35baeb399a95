"""Compare a drive's archived live files with the number of files Graph reports for it.

OneDrive for Business and SharePoint report ``quota.fileCount`` on the drive resource.
The OneDrive API reference documents it, except on Personal OneDrive, while Graph's
v1.0 quota page does not list it. When a drive leaves it out, the files of one
full delta round are counted instead, which reads the whole drive. Files added after the
backup, and items counted differently by the service (the files inside a OneNote
package, the recycle bin), make the two differ without a loss, so the Dagster check
built on this only warns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from m365lake.catalog import connect
from m365lake.graph import GraphClient
from m365lake.lake import Lake

QUOTA_BASIS = "quota.fileCount"
DELTA_BASIS = "delta"
_DELTA_SELECT = "id,file,folder,package,deleted,root"


@dataclass(frozen=True)
class DriveFileCount:
    """A drive's file count from Graph beside its live file count in the archive."""

    drive_id: str
    source: int
    basis: str
    """Origin of ``source``: ``quota.fileCount``, or ``delta`` when Graph omitted it."""
    archived: int

    @property
    def matches(self) -> bool:
        return self.source == self.archived


def _is_counted_file(item: dict[str, Any]) -> bool:
    return "file" in item and "deleted" not in item and "package" not in item


async def source_file_count(graph: GraphClient, drive_id: str) -> tuple[int, str]:
    """Return the drive's file count and its basis (``QUOTA_BASIS`` or ``DELTA_BASIS``)."""
    drive = await graph.get_json(f"/drives/{drive_id}", params={"$select": "id,quota"})
    count = (drive.get("quota") or {}).get("fileCount")
    if isinstance(count, int):
        return count, QUOTA_BASIS
    latest: dict[str, dict[str, Any]] = {}
    async for page in graph.delta(
        f"/drives/{drive_id}/root/delta", params={"$select": _DELTA_SELECT}
    ):
        for item in page.items:
            # The feed may repeat an item, and its last entry is the current state.
            latest[item["id"]] = item
    return sum(1 for item in latest.values() if _is_counted_file(item)), DELTA_BASIS


def archived_file_count(lake: Lake, drive_id: str) -> int:
    """Return the live archived files of one drive, packages (OneNote notebooks) excluded."""
    with connect(lake) as db:
        row = db.execute(
            "SELECT count(*) FROM files WHERE drive_id = ? AND package_type IS NULL",
            [drive_id],
        ).fetchone()
    return int(row[0]) if row else 0


async def compare_drive_files(graph: GraphClient, lake: Lake, drive_id: str) -> DriveFileCount:
    """Read the drive's count from Graph and the archive's count from the lake."""
    source, basis = await source_file_count(graph, drive_id)
    return DriveFileCount(drive_id, source, basis, archived_file_count(lake, drive_id))

"""Compare a mailbox's archived message counts with the counts Exchange reports per folder.

Exchange's ``totalItemCount`` counts every item in a folder, including calendar items,
contacts and other non-message items that the mail backup does not archive, and mail that
arrived after the backup read the folder. A difference is therefore a reason to look, not
proof of a lost message, which is why the Dagster check built on this only warns.
"""

from __future__ import annotations

from dataclasses import dataclass

from m365lake.catalog import connect
from m365lake.graph import GraphClient
from m365lake.lake import Lake

_FOLDER_SELECT = "displayName,parentFolderId,totalItemCount"


@dataclass(frozen=True)
class FolderCount:
    """One folder's item count in Exchange beside its live message count in the archive."""

    folder_id: str
    name: str
    source: int | None
    """``totalItemCount`` from Graph; None when Graph no longer lists the folder."""
    archived: int

    @property
    def matches(self) -> bool:
        return self.source == self.archived


async def source_folder_counts(graph: GraphClient, mailbox_id: str) -> dict[str, tuple[str, int]]:
    """Return folder id -> (display name, ``totalItemCount``) from a full folder delta."""
    counts: dict[str, tuple[str, int]] = {}
    async for page in graph.delta(
        f"/users/{mailbox_id}/mailFolders/delta",
        params={"$select": _FOLDER_SELECT},
        mailbox=mailbox_id,
    ):
        for folder in page.items:
            if "@removed" in folder:
                continue
            counts[folder["id"]] = (
                folder.get("displayName") or "",
                int(folder.get("totalItemCount") or 0),
            )
    return counts


def archived_folder_counts(lake: Lake, mailbox_id: str) -> dict[str, tuple[str, int]]:
    """Return folder id -> (folder path, live archived messages) for one mailbox."""
    with connect(lake) as db:
        rows = db.execute(
            "SELECT folder_id, any_value(folder_path), count(*) FROM messages "
            "WHERE mailbox_id = ? AND folder_id IS NOT NULL GROUP BY folder_id",
            [mailbox_id],
        ).fetchall()
    return {str(folder_id): (str(path or ""), int(count)) for folder_id, path, count in rows}


def compare_folder_counts(
    source: dict[str, tuple[str, int]], archived: dict[str, tuple[str, int]]
) -> list[FolderCount]:
    """Pair the two counts per folder, folders missing on either side included."""
    result: list[FolderCount] = []
    for folder_id in sorted(set(source) | set(archived)):
        source_name, source_count = source.get(folder_id, ("", None))
        archived_name, archived_count = archived.get(folder_id, ("", 0))
        result.append(
            FolderCount(
                folder_id=folder_id,
                name=archived_name or source_name,
                source=source_count,
                archived=archived_count,
            )
        )
    return result

"""Plan a files restore: where each archived folder and file goes and what is in the way.

Folders are planned before their contents. An archived folder whose id is still a live
folder of the same drive is reused wherever it now is, because items are addressed by id,
not by path. Otherwise a live folder of the same name under the target parent is reused,
and only then is a new folder planned. A file collides with a live item of the same name in
its target folder, unless that item has the archived size and QuickXorHash: then it is
already present. The restore ledger marks files an earlier restore put back.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from m365lake.catalog import connect
from m365lake.errors import ItemNotFoundError
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.restore.files_names import safe_item_name
from m365lake.restore.ledger import RestoreLedger
from m365lake.restore.model import ConflictPolicy, PlannedItem, RestoreTarget

logger = logging.getLogger(__name__)

WORKLOAD = "files"
FOLDER_VERSION = "folder"
CHILDREN_SELECT = "id,name,size,file,folder,package"


@dataclass(frozen=True)
class FilePlan(PlannedItem):
    """A plan line of a files restore, with what the executor needs to carry it out."""

    kind: str = "file"
    """``file`` or ``folder``."""
    name: str = ""
    """The name to create, after any rewrite for SharePoint's name rules."""
    original_name: str = ""
    parent_path: str = ""
    """Target path of the parent folder; the empty string is the drive root."""
    parent_id: str | None = None
    """Live id of the parent folder when it existed at planning time."""
    live_item_id: str | None = None
    """The live item that is identical (``already_present``) or in the way (``collision``)."""
    live_is_folder: bool = False
    """Whether the live item in the way is a folder."""
    size: int | None = None
    quickxor_hash: str | None = None
    created_at: datetime | None = None
    modified_at: datetime | None = None
    name_rewrite: str | None = None
    """The reason ``name`` differs from ``original_name``; None when it does not."""


@dataclass(frozen=True)
class _Decision:
    action: str
    reason: str | None
    live_item_id: str | None = None
    live_is_folder: bool = False


def is_identical(live: dict[str, Any], size: int | None, quickxor_hash: str | None) -> bool:
    """Return whether a live driveItem has the archived size and QuickXorHash."""
    hashes = (live.get("file") or {}).get("hashes") or {}
    return (
        quickxor_hash is not None
        and live.get("size") == size
        and hashes.get("quickXorHash") == quickxor_hash
    )


def archived_folders(
    lake: Lake, drive_id: str, as_of: datetime | None
) -> dict[str, dict[str, Any]]:
    """Return the archived folders of a drive by path, as of ``as_of`` or their newest version."""
    columns = "item_id, path, created_at, modified_at"
    with connect(lake) as db:
        if as_of is None:
            cursor = db.execute(
                f"SELECT {columns} FROM drive_item_versions WHERE drive_id = ? AND is_folder "
                "QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY captured_at DESC) = 1",
                [drive_id],
            )
        else:
            cursor = db.execute(
                f"SELECT {columns} FROM drive_items_as_of(?) WHERE drive_id = ? AND is_folder",
                [as_of, drive_id],
            )
        rows = cursor.fetchall()
    return {
        path: {"item_id": item_id, "created_at": created, "modified_at": modified}
        for item_id, path, created, modified in rows
        if path
    }


class _DrivePlanner:
    """Plans the rows of one source drive into one target drive."""

    def __init__(
        self,
        graph: GraphClient,
        source_drive: str,
        target: RestoreTarget,
        policy: ConflictPolicy,
        ledger: RestoreLedger,
        folders: dict[str, dict[str, Any]],
    ) -> None:
        self.graph = graph
        self.source_drive = source_drive
        self.target_drive = target.drive_id or source_drive
        self.restore_folder = target.restore_folder
        # Archived folder ids name live folders only in the drive they came from, and
        # only when the restore goes back to the original place.
        self.reuse_ids = self.target_drive == source_drive and target.restore_folder is None
        self.policy = policy
        self.ledger = ledger
        self.folders = folders
        self.plan: list[FilePlan] = []
        # Target path of each planned folder -> (live id or None, skip reason or None).
        self._folder_state: dict[str, tuple[str | None, str | None]] = {}
        self._children: dict[str, dict[str, dict[str, Any]]] = {}

    async def run(self, rows: Sequence[dict[str, Any]]) -> list[FilePlan]:
        root = await self.graph.get_json(
            f"/drives/{self.target_drive}/root", params={"$select": "id"}
        )
        self._folder_state[""] = (str(root["id"]), None)
        if self.restore_folder is not None:
            await self._plan_folder((self.restore_folder,), (), None)
        for row in sorted(rows, key=lambda row: _parts(row.get("path"))):
            parts = _parts(row.get("path"))
            if not parts or row.get("parent_id") is None:
                continue  # the drive root itself
            target_parts = await self._plan_ancestors(parts)
            if row.get("is_folder"):
                await self._plan_folder(target_parts, parts, row)
            else:
                await self._plan_file(target_parts, parts, row)
        return self.plan

    # ---- folders -----------------------------------------------------------------------

    async def _plan_ancestors(self, parts: tuple[str, ...]) -> tuple[str, ...]:
        """Plan the folders above ``parts``; return the target path of the item itself."""
        base: tuple[str, ...] = () if self.restore_folder is None else (self.restore_folder,)
        target: list[str] = list(base)
        for depth in range(1, len(parts)):
            archive_parts = parts[:depth]
            name, _ = safe_item_name(archive_parts[-1])
            target.append(name)
            if "/".join(target) not in self._folder_state:
                row = self.folders.get("/".join(archive_parts))
                await self._plan_folder(tuple(target), archive_parts, row)
        target.append(safe_item_name(parts[-1])[0])
        return tuple(target)

    async def _plan_folder(
        self,
        target_parts: tuple[str, ...],
        archive_parts: tuple[str, ...],
        row: dict[str, Any] | None,
    ) -> None:
        key = "/".join(target_parts)
        if key in self._folder_state:
            return
        parent_key = "/".join(target_parts[:-1])
        parent_id, parent_skip = self._folder_state[parent_key]
        original = archive_parts[-1] if archive_parts else target_parts[-1]
        name, rewrite = safe_item_name(original)

        decision = await self._folder_decision(key, name, row, parent_id, parent_skip, rewrite)
        live_id = decision.live_item_id if decision.action == "already_present" else None
        skip = parent_skip
        if skip is None and decision.action == "collision" and self.policy is ConflictPolicy.SKIP:
            # Under skip nothing below this folder is restored, and the plan shows that.
            skip = f"its folder {key!r} is skipped: {decision.reason}"
        self._folder_state[key] = (live_id, skip)

        source_id = (
            str(row["item_id"]) if row is not None else f"path:{'/'.join(archive_parts) or key}"
        )
        self.plan.append(
            FilePlan(
                workload=WORKLOAD,
                source_container=self.source_drive,
                source_item_id=source_id,
                source_version=FOLDER_VERSION,
                source_path="/".join(archive_parts),
                target_container=self.target_drive,
                target_path=key,
                action=decision.action,
                reason=decision.reason,
                kind="folder",
                name=name,
                original_name=original,
                parent_path=parent_key,
                parent_id=parent_id,
                live_item_id=decision.live_item_id,
                created_at=row.get("created_at") if row else None,
                modified_at=row.get("modified_at") if row else None,
                name_rewrite=rewrite,
            )
        )

    async def _folder_decision(
        self,
        key: str,
        name: str,
        row: dict[str, Any] | None,
        parent_id: str | None,
        parent_skip: str | None,
        rewrite: str | None,
    ) -> _Decision:
        if parent_skip is not None:
            return _Decision("collision", parent_skip)
        if self.reuse_ids and row is not None:
            original_id = await self._live_original(row)
            if original_id is not None:
                return _Decision("already_present", "the original folder still exists", original_id)
        live = (await self._children_of(parent_id)).get(name.casefold()) if parent_id else None
        if live is None:
            return _Decision("create", rewrite)
        live_id = str(live["id"])
        if "folder" in live:
            return _Decision(
                "already_present", f"a live folder {live['name']!r} is already there", live_id
            )
        return _Decision(
            "collision", f"a live file {live['name']!r} ({live_id}) has the folder's name", live_id
        )

    async def _live_original(self, row: dict[str, Any]) -> str | None:
        try:
            live = await self.graph.get_json(
                f"/drives/{self.target_drive}/items/{row['item_id']}",
                params={"$select": "id,folder,deleted"},
            )
        except ItemNotFoundError:
            return None
        if "folder" not in live or live.get("deleted"):
            return None
        return str(live["id"])

    async def _children_of(self, folder_id: str) -> dict[str, dict[str, Any]]:
        cached = self._children.get(folder_id)
        if cached is not None:
            return cached
        found: dict[str, dict[str, Any]] = {}
        async for page in self.graph.iter_pages(
            f"/drives/{self.target_drive}/items/{folder_id}/children",
            params={"$select": CHILDREN_SELECT},
        ):
            for child in page.get("value", []):
                found[str(child["name"]).casefold()] = child
        self._children[folder_id] = found
        return found

    # ---- files -------------------------------------------------------------------------

    async def _plan_file(
        self, target_parts: tuple[str, ...], parts: tuple[str, ...], row: dict[str, Any]
    ) -> None:
        parent_key = "/".join(target_parts[:-1])
        parent_id, parent_skip = self._folder_state[parent_key]
        name, rewrite = safe_item_name(parts[-1])
        sha256 = row.get("content_sha256")

        decision = await self._file_decision(row, name, parent_id, parent_skip, rewrite)
        self.plan.append(
            FilePlan(
                workload=WORKLOAD,
                source_container=self.source_drive,
                source_item_id=str(row["item_id"]),
                source_version=str(sha256 or "none"),
                source_path="/".join(parts),
                target_container=self.target_drive,
                target_path="/".join(target_parts),
                action=decision.action,
                reason=decision.reason,
                name=name,
                original_name=parts[-1],
                parent_path=parent_key,
                parent_id=parent_id,
                live_item_id=decision.live_item_id,
                live_is_folder=decision.live_is_folder,
                size=row.get("size"),
                quickxor_hash=row.get("quickxor_hash"),
                created_at=row.get("created_at"),
                modified_at=row.get("modified_at"),
                name_rewrite=rewrite,
            )
        )

    async def _file_decision(
        self,
        row: dict[str, Any],
        name: str,
        parent_id: str | None,
        parent_skip: str | None,
        rewrite: str | None,
    ) -> _Decision:
        if row.get("package_type"):
            return _Decision(
                "unrestorable",
                f"a {row['package_type']} package (such as a OneNote notebook) has no file "
                "content that Graph can upload",
            )
        sha256 = row.get("content_sha256")
        if not sha256:
            return _Decision(
                "unrestorable",
                "the archive contains no content for this version (it could not be "
                "downloaded when it was backed up)",
            )
        if parent_skip is not None:
            return _Decision("collision", parent_skip)
        size, quickxor_hash = row.get("size"), row.get("quickxor_hash")
        children = await self._children_of(parent_id) if parent_id else {}

        earlier = self.ledger.find(
            WORKLOAD, self.source_drive, str(row["item_id"]), sha256, self.target_drive
        )
        for child in children.values():
            if child.get("id") == earlier and is_identical(child, size, quickxor_hash):
                return _Decision(
                    "already_present", f"restored earlier as {child['name']!r}", earlier
                )

        live = children.get(name.casefold())
        if live is None:
            return _Decision("create", rewrite)
        live_id = str(live["id"])
        if is_identical(live, size, quickxor_hash):
            return _Decision(
                "already_present", f"a live file {live['name']!r} has the same content", live_id
            )
        is_folder = "folder" in live
        kind = "folder" if is_folder else "file"
        return _Decision(
            "collision",
            f"a live {kind} {live['name']!r} ({live_id}) has this name",
            live_id,
            is_folder,
        )


def _parts(path: object) -> tuple[str, ...]:
    if not isinstance(path, str):
        return ()
    return tuple(part for part in path.strip("/").split("/") if part)


async def plan_files(
    lake: Lake,
    graph: GraphClient,
    rows: Sequence[dict[str, Any]],
    target: RestoreTarget,
    policy: ConflictPolicy,
    ledger: RestoreLedger,
    *,
    as_of: datetime | None = None,
) -> list[FilePlan]:
    """Plan the restore of archived drive item rows (files and folders), drive by drive."""
    by_drive: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_drive[str(row["drive_id"])].append(row)
    plan: list[FilePlan] = []
    for source_drive, drive_rows in sorted(by_drive.items()):
        folders = archived_folders(lake, source_drive, as_of)
        planner = _DrivePlanner(graph, source_drive, target, policy, ledger, folders)
        plan += await planner.run(drive_rows)
        logger.info(
            "files restore planned %d items from drive %s into %s",
            len(planner.plan),
            source_drive,
            planner.target_drive,
        )
    return plan

"""Carry out a files restore plan through Graph, folder before contents, recording the ledger.

Each planned item becomes one outcome. A planned ``create`` uploads with conflict
behaviour ``fail``, so a name taken since planning comes back as 409. That item is then a
collision: identical content counts as already present, and otherwise the policy decides
(skip, rename beside it, replace it). When the clash shows only as the upload session
commits, the bytes Graph already has are committed by ``sourceUrl`` or discarded, not
uploaded again. Folders are created with ``fail`` too, and a
folder that appeared meanwhile is reused. All folders are restored before any file, and
files then go up a few at a time. The ledger is committed batch by batch, so a killed
restore keeps what it created.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, cast

from m365lake.errors import GraphError, ItemNotFoundError, LakeError, RestoreError
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.restore.files_plan import CHILDREN_SELECT, FilePlan, is_identical
from m365lake.restore.files_upload import (
    FRAGMENT_BYTES,
    FileTimes,
    NameTakenAtCommitError,
    cancel_session,
    commit_stored,
    content_source,
    inline_contents,
    upload_file,
)
from m365lake.restore.ledger import RestoreLedger, record
from m365lake.restore.model import ConflictPolicy, ItemResult, Outcome, PlannedItem

logger = logging.getLogger(__name__)

LEDGER_BATCH = 200
FILE_CONCURRENCY = 4
"""Files uploaded at once; SharePoint throttles by resource units, not by connections."""
INLINE_WINDOW_BYTES = 64 * 1024 * 1024
"""Most inline (Parquet) content read ahead at once, by the archived sizes."""
_POLICY_BEHAVIOR = {ConflictPolicy.RENAME: "rename", ConflictPolicy.REPLACE: "replace"}


class _Executor:
    def __init__(
        self,
        lake: Lake,
        graph: GraphClient,
        policy: ConflictPolicy,
        fragment_bytes: int,
    ) -> None:
        self.lake = lake
        self.graph = graph
        self.policy = policy
        self.fragment_bytes = fragment_bytes
        # (target drive, target path) -> live folder id, filled as folders are restored.
        self.folders: dict[tuple[str, str], str] = {}
        self.inline: dict[str, bytes] = {}

    async def restore(self, item: FilePlan) -> ItemResult:
        if item.action == "unrestorable":
            return ItemResult(item, Outcome.UNRESTORABLE, reason=item.reason)
        parent_id = self._parent_of(item)
        if item.action == "already_present":
            if item.kind == "folder" and item.live_item_id is not None:
                self.folders[(item.target_container, item.target_path)] = item.live_item_id
            return ItemResult(item, Outcome.ALREADY_PRESENT, item.live_item_id, item.reason)
        if parent_id is None:
            return ItemResult(
                item,
                Outcome.SKIPPED,
                reason=f"its folder {item.parent_path!r} was not restored",
            )
        if item.action == "collision" and self.policy is ConflictPolicy.SKIP:
            return ItemResult(item, Outcome.SKIPPED, item.live_item_id, item.reason)
        try:
            if item.kind == "folder":
                return await self._restore_folder(item, parent_id)
            return await self._restore_file(item, parent_id)
        except (GraphError, LakeError, RestoreError) as error:
            logger.info(
                "restoring %s to %s failed: %s", item.source_item_id, item.target_path, error
            )
            return ItemResult(item, Outcome.FAILED, reason=f"{type(error).__name__}: {error}")

    def _parent_of(self, item: FilePlan) -> str | None:
        known = self.folders.get((item.target_container, item.parent_path))
        if known is not None:
            return known
        if item.parent_path == "" or item.parent_id is not None:
            return item.parent_id
        return None

    # ---- folders -----------------------------------------------------------------------

    async def _restore_folder(self, item: FilePlan, parent_id: str) -> ItemResult:
        outcome = Outcome.CREATED
        if item.action == "collision":
            # A live file has the folder's name.
            if self.policy is ConflictPolicy.REPLACE and item.live_item_id is not None:
                await self.graph.send_json(
                    "DELETE", f"/drives/{item.target_container}/items/{item.live_item_id}"
                )
                outcome = Outcome.REPLACED
            else:
                outcome = Outcome.RENAMED
        behavior = "rename" if outcome is Outcome.RENAMED else "fail"
        body: dict[str, Any] = {
            "name": item.name,
            "folder": {},
            "@microsoft.graph.conflictBehavior": behavior,
        }
        times = FileTimes(item.created_at, item.modified_at).file_system_info()
        if times:
            body["fileSystemInfo"] = times
        url = f"/drives/{item.target_container}/items/{parent_id}/children"
        try:
            created = await self.graph.send_json("POST", url, json=body)
        except GraphError as error:
            if error.status != 409:
                raise
            # The name was taken after planning: reuse a folder, or treat a file as a clash.
            live = await self._live_child(item, parent_id)
            if live is None or "folder" not in live:
                raise
            created, outcome = live, Outcome.ALREADY_PRESENT
        if created is None:
            raise RestoreError(f"Graph returned no folder for {item.target_path!r}")
        folder_id = str(created["id"])
        self.folders[(item.target_container, item.target_path)] = folder_id
        return ItemResult(item, outcome, folder_id, item.name_rewrite)

    # ---- files -------------------------------------------------------------------------

    async def _restore_file(self, item: FilePlan, parent_id: str) -> ItemResult:
        if item.action == "collision":
            if item.live_is_folder and self.policy is ConflictPolicy.REPLACE:
                return ItemResult(
                    item,
                    Outcome.SKIPPED,
                    item.live_item_id,
                    f"{item.reason}; replace overwrites files only, never a live folder",
                )
            return await self._upload(item, parent_id, _POLICY_BEHAVIOR[self.policy])
        upload_url: str | None = None
        try:
            return await self._upload(item, parent_id, "fail")
        except NameTakenAtCommitError as error:
            # Graph already has every byte: commit them or discard them, never resend.
            upload_url = error.upload_url
        except GraphError as error:
            if error.status != 409:
                raise

        # The name was taken after planning, so this is a collision now.
        live = await self._live_child(item, parent_id)
        settled = self._settle_collision(item, live)
        if settled is not None:
            if upload_url is not None:
                await cancel_session(self.graph, upload_url)
            return settled

        conflict = _POLICY_BEHAVIOR[self.policy]
        replaced_id = None if live is None else str(live["id"])
        if upload_url is not None:
            try:
                created = await commit_stored(
                    self.graph,
                    item.target_container,
                    parent_id,
                    item.name,
                    upload_url=upload_url,
                    conflict=conflict,
                )
                return _uploaded(item, created, conflict, replaced_id)
            except ItemNotFoundError:
                # The session expired meanwhile, so its bytes are gone: upload again.
                logger.info("upload session of %s expired before its commit", item.source_item_id)
        return await self._upload(item, parent_id, conflict, replaced_id)

    def _settle_collision(self, item: FilePlan, live: dict[str, Any] | None) -> ItemResult | None:
        """Return the result of a collision found at upload that needs no upload; else None."""
        if live is not None and is_identical(live, item.size, item.quickxor_hash):
            return ItemResult(
                item, Outcome.ALREADY_PRESENT, str(live["id"]), "identical content appeared"
            )
        reason = f"a live item {item.name!r} appeared after planning"
        if self.policy is ConflictPolicy.SKIP:
            return ItemResult(item, Outcome.SKIPPED, None if live is None else live["id"], reason)
        if live is not None and "folder" in live and self.policy is ConflictPolicy.REPLACE:
            return ItemResult(item, Outcome.SKIPPED, str(live["id"]), f"{reason}: a folder")
        return None

    async def _upload(
        self, item: FilePlan, parent_id: str, conflict: str, replaced_id: str | None = None
    ) -> ItemResult:
        if item.size is None:
            raise RestoreError(f"the archive records no size for {item.source_path!r}")
        sha256 = item.source_version
        source = content_source(self.lake, sha256, self.inline.get(sha256))
        created = await upload_file(
            self.graph,
            item.target_container,
            parent_id,
            item.name,
            size=item.size,
            source=source,
            conflict=conflict,
            times=FileTimes(item.created_at, item.modified_at),
            fragment_bytes=self.fragment_bytes,
        )
        return _uploaded(item, created, conflict, replaced_id)

    async def _live_child(self, item: FilePlan, parent_id: str) -> dict[str, Any] | None:
        async for page in self.graph.iter_pages(
            f"/drives/{item.target_container}/items/{parent_id}/children",
            params={"$select": CHILDREN_SELECT},
        ):
            for child in page.get("value", []):
                if str(child.get("name", "")).casefold() == item.name.casefold():
                    return dict(child)
        return None


def _uploaded(
    item: FilePlan, created: dict[str, Any], conflict: str, replaced_id: str | None
) -> ItemResult:
    """Return the result of an upload that Graph committed as the driveItem ``created``."""
    target_id = str(created["id"])
    if conflict == "rename" and created.get("name") != item.name:
        outcome = Outcome.RENAMED
        reason: str | None = f"restored as {created.get('name')!r} beside the live item"
    elif conflict == "replace" and target_id in (item.live_item_id, replaced_id):
        outcome, reason = Outcome.REPLACED, f"replaced live item {target_id}"
    else:
        outcome, reason = Outcome.CREATED, None
    if item.name_rewrite:
        reason = item.name_rewrite if reason is None else f"{reason}; {item.name_rewrite}"
    return ItemResult(item, outcome, target_id, reason)


def _inline_window(
    lake: Lake, files: Sequence[FilePlan], start: int
) -> tuple[dict[str, bytes], int]:
    """Load the inline content of the files from ``start`` on; return it and where it stops.

    A window ends after ``LEDGER_BATCH`` files or once the files in it that could be
    inline add up to ``INLINE_WINDOW_BYTES``, so memory never contains the content of a
    whole restore.
    """
    hashes: set[str] = set()
    window_bytes = 0
    end = start
    while end < len(files) and end - start < LEDGER_BATCH and window_bytes < INLINE_WINDOW_BYTES:
        item = files[end]
        end += 1
        size = item.size or 0
        if item.action != "unrestorable" and size <= lake.inline_threshold:
            hashes.add(item.source_version)
            window_bytes += size
    return inline_contents(lake, hashes), end


def _is_file(item: PlannedItem) -> bool:
    return isinstance(item, FilePlan) and item.kind == "file"


async def _restore_one(executor: _Executor, item: PlannedItem) -> ItemResult:
    if isinstance(item, FilePlan):
        return await executor.restore(item)
    return ItemResult(item, Outcome.FAILED, reason="not a files restore plan line")


async def execute_files(
    lake: Lake,
    graph: GraphClient,
    plan: Sequence[PlannedItem],
    *,
    restore_id: str,
    policy: ConflictPolicy,
    ledger: RestoreLedger,
    fragment_bytes: int = FRAGMENT_BYTES,
    concurrency: int = FILE_CONCURRENCY,
) -> list[ItemResult]:
    """Restore each planned files item; return the results in plan order.

    Folders are restored first, one by one in plan order, because every file needs its
    folder's id. Files then go up ``concurrency`` at a time. The ledger is committed after
    every ``LEDGER_BATCH`` folders and after every window of files.
    """
    executor = _Executor(lake, graph, policy, fragment_bytes)
    results: dict[int, ItemResult] = {}

    def commit(batch: list[ItemResult]) -> None:
        record(lake, restore_id, batch)
        ledger.remember(batch)

    folders = [(index, item) for index, item in enumerate(plan) if not _is_file(item)]
    for start in range(0, len(folders), LEDGER_BATCH):
        batch = []
        for index, item in folders[start : start + LEDGER_BATCH]:
            results[index] = await _restore_one(executor, item)
            batch.append(results[index])
        commit(batch)

    indexes = [index for index, item in enumerate(plan) if _is_file(item)]
    files = [cast(FilePlan, plan[index]) for index in indexes]
    slots = asyncio.Semaphore(max(1, concurrency))

    async def restore_file(index: int, item: FilePlan) -> None:
        async with slots:
            results[index] = await executor.restore(item)

    start = 0
    while start < len(files):
        # Small content sits inline in Parquet; it is read one window at a time.
        executor.inline, end = _inline_window(lake, files, start)
        async with asyncio.TaskGroup() as group:
            for index, item in zip(indexes[start:end], files[start:end], strict=True):
                group.create_task(restore_file(index, item))
        commit([results[index] for index in indexes[start:end]])
        start = end

    ordered = [results[index] for index in range(len(plan))]
    counts: dict[str, int] = {}
    for result in ordered:
        counts[result.outcome.value] = counts.get(result.outcome.value, 0) + 1
    logger.info("files restore %s finished: %s", restore_id, counts)
    return ordered

"""Incremental backup of one OneDrive or SharePoint document library into the lake.

One run reads the drive's ``root/delta`` from the committed deltaLink, or the whole
drive on the first run and after a 410. It derives every item's path from the parent
chain, downloads new and changed file content into the lake and writes one version per
changed item. The new deltaLink is committed only in the run's last commit, together
with the deletions, the path updates and the list of downloads to retry.

Checkpoints: every ``checkpoint_files`` versions (or ``CHECKPOINT_SECONDS``) the run also
commits the versions written so far, with the list of downloads still to retry but not
the deltaLink. A run that dies after a checkpoint leaves those versions, and the next
run reads delta from the same token again. Each archived item then matches its version's
eTag and path, so it is neither downloaded nor written a second time.

Path changes: a folder rename or move reaches delta as one item, so the run writes a new
version (``change='updated'``, content reused) for every archived descendant whose
derived path changed. Each version's ``path`` is therefore the path at its capture.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from m365lake.errors import GraphError, ItemNotFoundError, SyncStateExpiredError
from m365lake.graph import GraphClient
from m365lake.lake import ContentRef, Lake, Transaction
from m365lake.sources import drive_rows
from m365lake.sources.drive_download import ContentMismatchError, download_content
from m365lake.sources.drive_list import Drive
from m365lake.sources.drive_result import (
    DriveBackupResult,
    delta_key,
    directory_key,
    pending_key,
    run_row,
)
from m365lake.sources.drive_state import (
    KnownItem,
    content_unchanged,
    inline_content,
    latest_rows,
    load_drive_state,
)
from m365lake.sources.drive_tree import DriveTree, TreeNode
from m365lake.sources.rows import failure_row, now_utc

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_FILE_SIZE",
    "DriveBackupResult",
    "backup_drive",
    "delta_key",
    "directory_key",
    "pending_key",
]

DEFAULT_MAX_FILE_SIZE = 15 * 1024**3
"""Largest file downloaded, in bytes; larger files are recorded as ``fileTooLarge`` gaps.

A chosen default, not a Graph limit: it bounds the disk and time one file can take.
"""

DELTA_PAGE_SIZE = 200

CHECKPOINT_FILES = 5_000
"""Versions written before the run commits what it has archived so far."""

CHECKPOINT_SECONDS = 300.0
"""Time after which the run commits what it has archived so far."""

MAX_RESYNCS = 3
"""Full listings started after a 410 in one run, before the drive is reported as failed."""


class _DriveRun:
    def __init__(
        self,
        graph: GraphClient,
        lake: Lake,
        tx: Transaction,
        drive: Drive,
        state: dict[str, KnownItem],
        result: DriveBackupResult,
        *,
        max_file_size: int,
        fetch_concurrency: int,
        checkpoint_files: int,
    ) -> None:
        self.graph = graph
        self.lake = lake
        self.tx = tx
        self.drive = drive
        self.state = state
        self.result = result
        self.max_file_size = max_file_size
        self.fetch_concurrency = fetch_concurrency
        self.partition = {"drive_id": drive.drive_id}
        self.tree = DriveTree()
        self.handled: set[str] = set()
        self.pending: set[str] = set()
        """Items whose download failed in this run: the next run retries them."""
        self.retry_left: set[str] = set()
        """Items that an earlier run left to retry and that this run has not archived yet."""
        self.downloads: deque[tuple[dict[str, Any], str, str]] = deque()
        self.inline_wanted: list[tuple[dict[str, Any], str, str, str]] = []
        self.checkpoint_files = checkpoint_files
        self._since_checkpoint = 0
        self._checkpoint_clock = time.monotonic()

    @property
    def drive_id(self) -> str:
        return self.drive.drive_id

    def saved_link(self) -> str | None:
        """Return the committed deltaLink if it targets the configured Graph host."""
        link = self.lake.state(delta_key(self.drive_id))
        if link is None:
            return None
        if not _same_origin(str(link), self.graph.settings.graph_url):
            # Links are followed verbatim, so one saved against another endpoint would
            # send the token to that host.
            log.warning("saved delta link of drive %s points at another host", self.drive_id)
            return None
        return str(link)

    async def _read_delta(self, url: str, first: bool) -> tuple[dict[str, dict[str, Any]], str]:
        items: dict[str, dict[str, Any]] = {}
        delta_link = None
        params = {"$select": drive_rows.ITEM_SELECT} if first else None
        headers = {"Prefer": f"odata.maxpagesize={DELTA_PAGE_SIZE}"}
        # NOTE: the whole round is kept in memory, because paths need every parent first.
        # A first run of a drive with millions of items needs memory in proportion.
        async for page in self.graph.delta(url, params=params, headers=headers):
            for item in page.items:
                # The feed contains each item's latest state and may repeat an item.
                items.pop(item["id"], None)
                items[item["id"]] = item
            if page.delta_link:
                delta_link = page.delta_link
        if delta_link is None:
            raise GraphError(f"drive {self.drive_id}: delta ended without a deltaLink")
        return items, delta_link

    async def read_changes(self) -> tuple[dict[str, dict[str, Any]], str, bool]:
        """Return the delta items by id, the new deltaLink and whether it was a full listing.

        A 410 restarts the round as a full listing, from the ``Location`` Graph sent when
        there is one. The token of that listing can die as well, so up to ``MAX_RESYNCS``
        restarts are made before the drive fails.
        """
        initial = f"/drives/{self.drive_id}/root/delta"
        link = self.saved_link()
        url, first, full = link or initial, link is None, link is None
        for restarts in range(MAX_RESYNCS + 1):
            try:
                items, delta_link = await self._read_delta(url, first)
                return items, delta_link, full
            except SyncStateExpiredError as error:
                if restarts == MAX_RESYNCS:
                    raise
                self.result.resyncs += 1
                restart = error.location
                if restart and not _same_origin(restart, self.graph.settings.graph_url):
                    restart = None
                log.info("delta token of drive %s expired; enumerating it again", self.drive_id)
                url, first, full = restart or initial, restart is None, True
        raise AssertionError("unreachable: the last restart returns or raises")

    async def execute(self) -> None:
        delta_link, live_before, removed = await self.plan_round()
        self.write_reused_inline()
        await self.run_downloads()
        self.write_moved_descendants(live_before, removed)
        self.write_deletions(live_before, removed)
        self.tx.set_state(delta_key(self.drive_id), delta_link)
        self.tx.set_state(pending_key(self.drive_id), sorted(self.pending) or None)
        self.result.pending_retries = len(self.pending)

    async def plan_round(self) -> tuple[str, dict[str, KnownItem], set[str]]:
        """Read delta and plan every change. Return the deltaLink, the live items and removals.

        The delta items are dropped on return, except those queued for download.
        """
        previous_pending = set(self.lake.state(pending_key(self.drive_id)) or [])
        self.retry_left = set(previous_pending)
        items, delta_link, full = await self.read_changes()
        live_before = {item_id: k for item_id, k in self.state.items() if not k.deleted}
        if not full:
            for item_id, known in live_before.items():
                self.tree.put(item_id, TreeNode(known.parent_id, known.name or "", known.is_folder))

        removed = {item_id for item_id, item in items.items() if "deleted" in item}
        for item_id, item in items.items():
            if item_id not in removed:
                self.tree.put(item_id, _node(item))
        if full:
            # A full listing is the drive's whole truth: archived items it lacks are gone.
            removed |= set(live_before) - set(items)
        removed |= self.tree.descendants(removed)
        self.tree.remove(removed)

        for item_id, item in items.items():
            if item_id not in removed:
                self.plan(item)
        await self.retry_pending(previous_pending - set(items) - removed)
        return delta_link, live_before, removed

    # ---- checkpoints ---------------------------------------------------------------

    def checkpoint_due(self) -> bool:
        return self._since_checkpoint >= self.checkpoint_files or (
            self._since_checkpoint > 0
            and time.monotonic() - self._checkpoint_clock >= CHECKPOINT_SECONDS
        )

    def checkpoint(self) -> None:
        """Commit the versions written so far, without the deltaLink, and begin a new transaction.

        The retry list committed with them keeps every item still owed a download: this
        run's failures, and the earlier runs' that it has not archived yet.
        """
        still_pending = self.pending | self.retry_left
        self.tx.set_state(pending_key(self.drive_id), sorted(still_pending) or None)
        manifest = self.tx.commit(counts=self.result.counts())
        self.result.commit_seq = manifest.get("seq")
        self.result.commits += 1
        log.info(
            "drive %s: checkpoint commit %s after %d versions",
            self.drive_id,
            self.result.commit_seq,
            self._since_checkpoint,
        )
        self.tx = self.lake.begin(run_id=self.result.run_id, kind="files", container=self.drive_id)
        self._since_checkpoint = 0
        self._checkpoint_clock = time.monotonic()

    # ---- planning ------------------------------------------------------------------

    def plan(self, item: dict[str, Any], *, retry: bool = False) -> None:
        """Write the item's new version now, or queue its download or content lookup.

        ``retry`` is set for an item whose download failed in an earlier run: it is
        downloaded even when its metadata matches the archived version.
        """
        item_id = item["id"]
        self.handled.add(item_id)
        path = self.tree.path(item_id)
        known = self.state.get(item_id)
        was_live = known is not None and not known.deleted
        unchanged = known is not None and known.etag == item.get("eTag") and known.path == path
        if was_live and unchanged and not retry:
            self.result.unchanged_replays += 1
            return
        change = "updated" if was_live else "created"
        if drive_rows.is_folder(item):
            self.write_item(item, path, change, None)
            return
        gap = self.coverage_gap(item)
        if gap is not None:
            self.write_item(item, path, change, None)
            self.record_failure(item_id, "content", "skipped", gap, f"{gap}: {item.get('name')}")
            return
        if not retry and content_unchanged(known, item):
            assert known is not None and known.content_sha256 is not None
            self.result.content_reused += 1
            if self.lake.blobs.exists(known.content_sha256):
                content = ContentRef(known.content_sha256, int(item.get("size") or 0), None)
                self.write_item(item, path, change, content)
            else:
                self.inline_wanted.append((item, path, change, known.content_sha256))
            return
        self.downloads.append((item, path, change))

    def coverage_gap(self, item: dict[str, Any]) -> str | None:
        """Return why the item's content is not archived, or None when it is downloaded."""
        if "package" in item:
            return "packageWithoutContent"
        if "malware" in item:
            return "malwareDetected"
        if "file" not in item:
            return "remoteItem" if "remoteItem" in item else "noFileContent"
        if int(item.get("size") or 0) > self.max_file_size:
            return "fileTooLarge"
        return None

    async def retry_pending(self, item_ids: set[str]) -> None:
        """Fetch again the items whose download failed in an earlier run."""
        for item_id in sorted(item_ids):
            try:
                item = await self.graph.get_json(
                    f"/drives/{self.drive_id}/items/{item_id}",
                    params={"$select": drive_rows.ITEM_SELECT},
                )
            except ItemNotFoundError as error:
                # Deleted since; a later delta round reports the deletion.
                self.retry_left.discard(item_id)
                self.record_failure(item_id, "retry", "skipped", "itemNotFound", str(error))
                continue
            except GraphError as error:
                self.pending.add(item_id)
                self.record_failure(item_id, "retry", "failed", _reason(error), str(error))
                continue
            self.tree.put(item_id, _node(item))
            self.plan(item, retry=True)

    # ---- content -------------------------------------------------------------------

    async def run_downloads(self) -> None:
        """Download the queued items, ``fetch_concurrency`` at once, checkpointing as due."""
        # A fixed set of workers, rather than one task per item, keeps memory flat
        # however many files the round has.
        workers = [
            asyncio.ensure_future(self._download_worker()) for _ in range(self.fetch_concurrency)
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            # When one worker fails, the others stop too, before the run aborts its
            # transaction, so none of them writes or commits afterwards.
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _download_worker(self) -> None:
        while self.downloads:
            await self._download(*self.downloads.popleft())
            # Commits run on the event loop between downloads, so no row is half-written.
            if self.checkpoint_due():
                self.checkpoint()

    async def _download(self, item: dict[str, Any], path: str, change: str) -> None:
        item_id = item["id"]
        try:
            result = await download_content(
                self.graph,
                self.lake,
                self.drive_id,
                item_id,
                expected_size=item.get("size"),
                expected_quickxor=drive_rows.quickxor_of(item),
            )
        except ContentMismatchError as error:
            self.pending.add(item_id)
            self.record_failure(item_id, "download", "failed", error.reason, str(error))
            return
        except ItemNotFoundError as error:
            self.retry_left.discard(item_id)
            self.record_failure(item_id, "download", "skipped", "itemNotFound", str(error))
            return
        except GraphError as error:
            self.pending.add(item_id)
            self.record_failure(
                item_id, "download", "failed", _reason(error), str(error), error.request_id
            )
            return
        self.result.bytes_downloaded += result.bytes_received
        self.result.blobs_written += int(result.new_blob)
        self.result.resumes += result.resumes
        self.pending.discard(item_id)
        self.write_item(item, path, change, result.content)

    def write_reused_inline(self) -> None:
        """Write the versions whose unchanged content is stored inline in an earlier row."""
        found = inline_content(self.lake, self.drive_id, {w[3] for w in self.inline_wanted})
        for item, path, change, digest in self.inline_wanted:
            data = found.get(digest)
            if data is None:
                # The archived row lost its inline bytes; download the content again.
                self.downloads.append((item, path, change))
                continue
            self.write_item(item, path, change, ContentRef(digest, len(data), data))
        self.inline_wanted.clear()

    # ---- rows ----------------------------------------------------------------------

    def write_item(
        self, item: dict[str, Any], path: str, change: str, content: ContentRef | None
    ) -> None:
        row = drive_rows.item_row(
            drive_id=self.drive_id,
            site_id=self.drive.site_id,
            item=item,
            path=path,
            change=change,
            run_id=self.result.run_id,
            content=content,
        )
        self.tx.write_rows("drive_items", [row], partition=self.partition)
        self.retry_left.discard(item["id"])
        self._since_checkpoint += 1
        if change == "created":
            self.result.items_new += 1
        else:
            self.result.items_updated += 1

    def write_moved_descendants(self, live_before: dict[str, KnownItem], removed: set[str]) -> None:
        """Write a new version of each untouched archived item whose derived path changed."""
        moved = {
            item_id: self.tree.path(item_id)
            for item_id, known in live_before.items()
            if item_id not in removed
            and item_id not in self.handled
            and item_id in self.tree
            and self.tree.path(item_id) != known.path
        }
        if not moved:
            return
        captured_at = now_utc()
        for row in latest_rows(self.lake, self.drive_id, sorted(moved)):
            row.update(
                path=moved[row["item_id"]],
                change="updated",
                captured_at=captured_at,
                run_id=self.result.run_id,
                deleted_at=None,
            )
            self.tx.write_rows("drive_items", [row], partition=self.partition)
            self.result.paths_updated += 1

    def write_deletions(self, live_before: dict[str, KnownItem], removed: set[str]) -> None:
        rows = []
        for item_id in sorted(removed & set(live_before)):
            known = live_before[item_id]
            rows.append(
                drive_rows.deletion_row(
                    drive_id=self.drive_id,
                    site_id=self.drive.site_id,
                    item_id=item_id,
                    parent_id=known.parent_id,
                    name=known.name,
                    path=known.path,
                    folder=known.is_folder,
                    run_id=self.result.run_id,
                )
            )
            self.pending.discard(item_id)
        if rows:
            self.tx.write_rows("drive_items", rows, partition=self.partition)
        self.result.items_deleted = len(rows)

    def record_failure(
        self,
        item_id: str | None,
        stage: str,
        outcome: str,
        reason: str,
        detail: str,
        request_id: str | None = None,
    ) -> None:
        log.warning(
            "drive %s: %s of item %s %s: %s", self.drive_id, stage, item_id, outcome, reason
        )
        row = failure_row(
            workload="files",
            mailbox_id=None,
            container_id=self.drive_id,
            run_id=self.result.run_id,
            item_id=item_id,
            stage=stage,
            outcome=outcome,
            reason=reason,
            detail=detail[:500],
            request_id=request_id,
        )
        self.tx.write_rows("failures", [row], partition={"container_id": self.drive_id})
        self.result.failures += 1


def _node(item: dict[str, Any]) -> TreeNode:
    parent_id = None if "root" in item else (item.get("parentReference") or {}).get("id")
    return TreeNode(parent_id, item.get("name") or "", drive_rows.is_folder(item))


def _reason(error: GraphError) -> str:
    return error.code or type(error).__name__


def _same_origin(link: str, graph_url: str) -> bool:
    target, endpoint = urlsplit(link), urlsplit(graph_url)
    return (target.scheme, target.netloc) == (endpoint.scheme, endpoint.netloc)


async def backup_drive(
    graph: GraphClient,
    lake: Lake,
    drive: Drive,
    *,
    run_id: str,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    fetch_concurrency: int = 4,
    checkpoint_files: int = CHECKPOINT_FILES,
) -> DriveBackupResult:
    """Archive the changes in ``drive`` since its last commit.

    The run ends in one commit, which advances the drive's deltaLink. Every
    ``checkpoint_files`` versions (or ``CHECKPOINT_SECONDS``) it also commits the versions
    written so far, so a run that dies on a large drive does not download them again.
    """
    result = DriveBackupResult(drive=drive, run_id=run_id, started_at=now_utc())
    tx = lake.begin(run_id=run_id, kind="files", container=drive.drive_id)
    run = None
    try:
        # Read the archive after the transaction took its starting point, so a commit
        # by a concurrent run in between is caught as a conflict.
        state = await asyncio.to_thread(load_drive_state, lake, drive.drive_id)
        run = _DriveRun(
            graph,
            lake,
            tx,
            drive,
            state,
            result,
            max_file_size=max_file_size,
            fetch_concurrency=fetch_concurrency,
            checkpoint_files=checkpoint_files,
        )
        await run.execute()
        result.finished_at = now_utc()
        entry = drive.row()
        if lake.state(directory_key(drive.drive_id)) != entry:
            run.tx.write_rows("drives", [entry], partition={})
            run.tx.set_state(directory_key(drive.drive_id), entry)
        run.tx.write_rows("runs", [run_row(result)], partition={})
        manifest = run.tx.commit(counts=result.counts())
        result.commit_seq = manifest.get("seq")
        result.commits += 1
    finally:
        # Committed work stays. Only the open transaction's files are dropped.
        (run.tx if run else tx).abort()
    log.info(
        "drive %s committed in %d commits: %d new, %d updated, %d moved, %d deleted, %d failures",
        drive.drive_id,
        result.commits,
        result.items_new,
        result.items_updated,
        result.paths_updated,
        result.items_deleted,
        result.failures,
    )
    return result

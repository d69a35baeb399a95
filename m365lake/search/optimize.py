"""Optimise the search index: merge segments and delete files the index no longer uses.

Every update commits one or more segments, and documents that an update replaced or
deleted stay in their old segments, marked deleted, until a merge rewrites them.
``optimize_index`` runs under the same ``search-index`` lease as updates, so it never
races one.

NOTE: tantivy-py 0.27 exposes no call that forces a merge of chosen segments. An empty
commit makes Tantivy's default merge policy (``LogMergePolicy``) merge the segments it
selects, which are groups of at least 8 segments of similar size. The index may
therefore keep several segments, and deleted documents in a segment the policy leaves
alone still take space. ``m365lake index --rebuild`` writes a fully compacted index.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import tantivy

from m365lake.errors import SearchIndexError
from m365lake.lake import Lake
from m365lake.search.index import (
    folder_bytes,
    held_lease,
    open_index,
    open_writer,
    remove_leftover_folders,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexOptimization:
    """The index before and after ``optimize_index``."""

    documents: int
    segments_before: int
    segments_after: int
    bytes_before: int
    bytes_after: int
    leftover_folders_removed: int
    """Folders that killed rebuilds left beside the index."""
    seconds: float

    def describe(self) -> str:
        """Return a one-line summary for the terminal and logs."""
        return (
            f"index optimised in {self.seconds:.1f} s: {self.segments_before} segments "
            f"merged into {self.segments_after}, {self.bytes_before / 1_000_000:.1f} MB "
            f"reduced to {self.bytes_after / 1_000_000:.1f} MB, {self.documents} documents, "
            f"{self.leftover_folders_removed} leftover rebuild folders removed"
        )


def optimize_index(lake: Lake, *, owner: str | None = None) -> IndexOptimization:
    """Merge the index's segments and garbage-collect its unused files; return the figures.

    Takes the ``search-index`` lease for the whole run, so it never runs during an index
    update. Raises SearchIndexError when another process has the lease or Tantivy's
    writer lock, or when the lake has no index.
    """
    started = time.monotonic()
    owner = owner or f"optimize-{uuid.uuid4().hex[:8]}"
    with held_lease(lake, owner) as lease_problems:
        opened = open_index(lake)
        folder = opened.path
        segments_before = opened.index.searcher().num_segments
        bytes_before = folder_bytes(folder)
        _merge(opened.index, folder)
        if lease_problems:
            raise SearchIndexError(
                f"the search index lease of {lake.location} could not be renewed "
                f"({lease_problems[0]}) while segments were merged. The merged index is "
                "complete; run `m365lake index --optimize` again to delete unused files"
            )
        _collect_garbage(opened.index, folder)
        removed = remove_leftover_folders(lake)
        opened.index.reload()
        searcher = opened.index.searcher()
        result = IndexOptimization(
            documents=searcher.num_docs,
            segments_before=segments_before,
            segments_after=searcher.num_segments,
            bytes_before=bytes_before,
            bytes_after=folder_bytes(folder),
            leftover_folders_removed=removed,
            seconds=time.monotonic() - started,
        )
    logger.info("%s", result.describe())
    return result


def _merge(index: tantivy.Index, folder: Path) -> None:
    writer = open_writer(index, folder)
    try:
        # The commit has no changes of its own. It makes the merge policy consider every
        # segment, and the wait below lets the merges it starts finish.
        writer.commit()
    except BaseException:
        writer.rollback()
        raise
    finally:
        writer.wait_merging_threads()


def _collect_garbage(index: tantivy.Index, folder: Path) -> None:
    # A writer whose merging threads were waited for cannot be used again, so the files
    # that the merges made unused are deleted through a second writer.
    writer = open_writer(index, folder)
    try:
        writer.garbage_collect_files()
    finally:
        writer.wait_merging_threads()

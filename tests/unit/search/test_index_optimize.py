"""Optimising the index merges its segments and keeps every document and hit."""

from __future__ import annotations

from pathlib import Path

import pytest

from m365lake.errors import SearchIndexError
from m365lake.lake import Lake
from m365lake.search import fields
from m365lake.search.hits import search
from m365lake.search.index import (
    LEASE_NAME,
    OLD_PREFIX,
    REBUILD_PREFIX,
    IndexState,
    index_path,
    open_index,
    open_tantivy,
    schema_digest,
    write_state,
)
from m365lake.search.optimize import optimize_index
from tests.unit.search.test_index_stats import CAPTURED, DOCUMENTS

QUERIES = ["alpha", "gamma OR delta", "beta", "size>150"]


def many_segments_lake(root: Path, segments: int) -> Lake:
    """Write each document in its own commit, as many short updates do, and skip the merges.

    Dropping a writer without waiting for its merging threads leaves the segments unmerged,
    as an update killed after its commits does.
    """
    lake = Lake.open(root / "lake")
    folder = index_path(lake)
    index = open_tantivy(folder, create=True)
    for number in range(segments):
        writer = index.writer(heap_size=15_000_000, num_threads=1)
        built = dict(DOCUMENTS[number % len(DOCUMENTS)])
        built["doc_id"] = [f"mail:box:{number}"]
        built["item_id"] = [str(number)]
        writer.add_document(fields.to_tantivy_document(built))
        writer.commit()
        del writer
    write_state(folder, IndexState(0, None, schema_digest(), CAPTURED.isoformat()))
    return lake


def hits(lake: Lake) -> dict[str, set[str]]:
    return {query: {hit.doc_id for hit in search(lake, query).hits} for query in QUERIES}


def test_optimize_merges_segments_keeps_hits(tmp_path: Path):
    lake = many_segments_lake(tmp_path, 24)
    before = hits(lake)

    result = optimize_index(lake)

    assert result.segments_before == 24
    assert result.segments_after < result.segments_before
    assert open_index(lake).index.searcher().num_segments == result.segments_after
    assert result.documents == 24
    assert result.bytes_after < result.bytes_before
    assert hits(lake) == before


def test_optimize_removes_leftover_rebuild_folders(tmp_path: Path):
    lake = many_segments_lake(tmp_path, 2)
    (lake.root / f"{REBUILD_PREFIX}0123456789ab").mkdir()
    (lake.root / f"{REBUILD_PREFIX}0123456789ab" / "meta.json").write_text("{}")
    (lake.root / f"{OLD_PREFIX}0123456789ab").mkdir()

    result = optimize_index(lake)

    assert result.leftover_folders_removed == 2
    assert sorted(path.name for path in lake.root.iterdir() if path.name.startswith("index")) == [
        "index"
    ]


def test_optimize_rejected_while_lease_held(tmp_path: Path):
    lake = many_segments_lake(tmp_path, 2)
    lease = lake.acquire_lease(LEASE_NAME, owner="hourly-update")
    try:
        with pytest.raises(SearchIndexError, match="hourly-update"):
            optimize_index(lake)
    finally:
        lease.release()

    assert optimize_index(lake).documents == 2


def test_optimize_without_index_says_run_index(tmp_path: Path):
    lake = Lake.open(tmp_path / "lake")

    with pytest.raises(SearchIndexError, match="m365lake index"):
        optimize_index(lake)

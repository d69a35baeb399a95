"""Match query holds against the archived versions that the search index does not contain.

The index contains one document per item, built from its newest live version, so a
query hold resolved through the index misses an item whose older version matched the
query while its newest does not. Indexing every version would multiply the index.
Instead, only the versions that decide a removal are checked here: for an item that
could lose versions, each older version inside a hold's date range gets the document
the index would build for it (same rows, same extraction) and the hold's parsed query
is evaluated over it with ``m365lake.search.kql.matches``, which the KQL tests hold
equal to the compiled Tantivy query.

The search package is imported only when a version has to be checked, so custodian
holds keep working without it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from m365lake.discovery.coverage import HoldCoverage, ItemKey, ItemVersion, in_date_range
from m365lake.discovery.records import Hold, utc_now
from m365lake.lake import Lake

if TYPE_CHECKING:
    from m365lake.search.fields import SearchDocument
    from m365lake.search.indexing import Extractor

logger = logging.getLogger(__name__)

IN_FLIGHT = 8
"""Versions read and extracted at once."""


class LocatedVersion(Protocol):
    """An archived version with the committed file row that stores it."""

    @property
    def table(self) -> str: ...
    @property
    def path(self) -> str:
        """Lake-relative path of the Parquet file."""

    @property
    def row_index(self) -> int: ...
    @property
    def version(self) -> ItemVersion: ...
    @property
    def tombstone(self) -> bool: ...
    @property
    def newest_live(self) -> bool:
        """The item's newest version that is not a deletion: the one the index contains."""

    @property
    def item_deleted_at(self) -> datetime | None: ...


def versions_to_check(
    coverage: HoldCoverage, items: Mapping[ItemKey, Sequence[LocatedVersion]]
) -> dict[LocatedVersion, list[Hold]]:
    """Return each version that the index did not evaluate, with the query holds to try on it.

    A tombstone has no content, and the newest live version is what the index evaluated,
    so neither is checked. A version outside a hold's date range cannot make it match.
    """
    work: dict[LocatedVersion, list[Hold]] = {}
    for versions in items.values():
        for stored in versions:
            if stored.tombstone or stored.newest_live:
                continue
            holds = [
                hold
                for hold in coverage.unmatched_query_holds(stored.version)
                if in_date_range(hold, stored.version.item_date)
            ]
            if holds:
                work[stored] = holds
    return work


def match_older_versions(
    lake: Lake,
    coverage: HoldCoverage,
    items: Mapping[ItemKey, Sequence[LocatedVersion]],
    *,
    extractor: Extractor | None = None,
) -> int:
    """Confirm in ``coverage`` the items whose older versions match an unmatched query hold.

    ``items`` holds every archived version of each item that could lose versions;
    ``coverage`` must have settled its index hits over them first. Returns the number of
    versions evaluated. Each version is decided as the index would decide it if it
    contained that version.
    """
    work = versions_to_check(coverage, items)
    if not work:
        return 0
    from m365lake.search.kql import PreparedDocument, matches, parse

    queries = {hold.hold_id: parse(hold.kql or "") for holds in work.values() for hold in holds}
    now = utc_now()
    evaluated = 0
    with _extraction(extractor) as extract:
        for stored, document in _documents(lake, list(work), extract):
            evaluated += 1
            key = (stored.version.workload, stored.version.container_id, stored.version.item_id)
            prepared = PreparedDocument(document)
            # NOTE: text that extraction could not read (a parser timeout, an unreadable
            # blob) is missing here as it is from the index, so a query that needs it
            # does not match. The document's index_issues name such versions.
            for hold in work[stored]:
                if matches(queries[hold.hold_id], prepared, now=now):
                    coverage.confirm(hold.hold_id, key)
    logger.info("evaluated %d older versions against query holds", evaluated)
    return evaluated


@contextlib.contextmanager
def _extraction(extractor: Extractor | None) -> Iterator[Extractor]:
    if extractor is not None:
        yield extractor
        return
    from m365lake.search.extract import ExtractionPool

    with ExtractionPool() as pool:
        yield pool


def _documents(
    lake: Lake, versions: Sequence[LocatedVersion], extractor: Extractor
) -> Iterator[tuple[LocatedVersion, SearchDocument]]:
    """Yield the search document of each version, built as the index builds documents."""
    from m365lake.search.changes import ItemVersion as IndexedVersion
    from m365lake.search.changes import committed_files, load_directory, read_rows
    from m365lake.search.indexing import build_document

    files = committed_files(lake, lake.manifests())
    directory = load_directory(lake, files)
    entries = {file.entry["path"]: file.entry for file in files}
    by_file: dict[str, list[LocatedVersion]] = defaultdict(list)
    for stored in versions:
        by_file[stored.path].append(stored)
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=IN_FLIGHT, thread_name_prefix="hold-extract"
    ) as pool:
        pending: dict[concurrent.futures.Future[SearchDocument], LocatedVersion] = {}
        for path, stored_versions in by_file.items():
            located = {
                stored.row_index: stored
                for stored in sorted(stored_versions, key=lambda s: s.row_index)
            }
            wanted = [
                IndexedVersion(
                    table=stored.table,
                    container_id=stored.version.container_id,
                    item_id=stored.version.item_id,
                    path=lake.storage.url(path),
                    row_index=stored.row_index,
                    deleted_at=None,
                    entry=entries[path],
                )
                for stored in located.values()
            ]
            for version, row in read_rows(lake, wanted):
                while len(pending) >= IN_FLIGHT:
                    yield from _finished(pending)
                future = pool.submit(build_document, lake, version, row, directory, extractor)
                pending[future] = located[version.row_index]
        while pending:
            yield from _finished(pending)


def _finished(
    pending: dict[concurrent.futures.Future[Any], LocatedVersion],
) -> Iterator[tuple[LocatedVersion, SearchDocument]]:
    done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
    for future in done:
        yield pending.pop(future), future.result()

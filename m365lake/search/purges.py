"""Follow purges in the index: rewrite or delete the documents of items a purge changed.

A purge commit replaces every file of each mailbox, drive or team partition that held a
purged row with files of the rows it kept (see ``m365lake.retention.purging``), and deletes the
replaced files. The removed files cannot be read afterwards, so the items they contained
are not known by name. Instead, every item of a purged partition is located again in the
partition's live files and compared with its document. A document that names another
version (by ``captured_at``, ``run_id`` and ``deleted_at``) is written again from the
newest surviving version. A document whose item has no live version left is deleted.
A purged item is then no longer found, and the index contains what a rebuild from the
live files would.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import tantivy

from m365lake.lake import Lake
from m365lake.search import fields
from m365lake.search.changes import (
    ITEM_TABLES,
    CommittedFile,
    VersionSet,
    container_versions,
    partition_column,
    purged_containers,
)
from m365lake.search.documents import (
    CALENDAR_WORKLOAD,
    CONTACTS_WORKLOAD,
    FILES_WORKLOAD,
    MAIL_WORKLOAD,
    TEAMS_WORKLOAD,
    doc_id_of,
    index_date,
)

logger = logging.getLogger(__name__)

TABLE_WORKLOADS: Mapping[str, str] = {
    "messages": MAIL_WORKLOAD,
    "drive_items": FILES_WORKLOAD,
    "events": CALENDAR_WORKLOAD,
    "contacts": CONTACTS_WORKLOAD,
    "channel_messages": TEAMS_WORKLOAD,
}

VersionIdentity = tuple[dt.datetime | None, str | None, dt.datetime | None]
"""``captured_at``, ``run_id`` and ``deleted_at`` of a version, as a document stores them."""


class PurgeSchedule:
    """The partitions that the purges among an update's manifests replaced, by commit.

    A partition purged twice is checked only at the later purge. The later purge removed
    the partition's files committed between the two, so no commit in between changes its
    items, and a check at the earlier purge would only extract the same items twice.
    """

    def __init__(self, manifests: Sequence[Mapping[str, Any]]) -> None:
        self.last_purge: dict[tuple[str, str], int] = {}
        for manifest in manifests:
            for partition in purged_containers(manifest):
                self.last_purge[partition] = int(manifest["seq"])

    def containers(self, first_seq: int, last_seq: int) -> dict[str, set[str]]:
        """Return table → containers whose last purge is among commits ``first_seq..last_seq``."""
        found: dict[str, set[str]] = {}
        for (table, container), seq in self.last_purge.items():
            if first_seq <= seq <= last_seq:
                found.setdefault(table, set()).add(container)
        return found


@dataclass
class Recheck:
    """The changes one table's purged partitions need: documents to write and to delete."""

    versions: VersionSet
    """Versions whose document is missing or names another version."""
    removed: list[str] = field(default_factory=list)
    """``doc_id`` of each document whose item has no live version left."""


def recheck_containers(
    lake: Lake,
    table: str,
    files: Sequence[CommittedFile],
    containers: Collection[str],
    changed: VersionSet,
    searcher: tantivy.Searcher,
    schema: tantivy.Schema,
    partition_of: Mapping[str, str] | None = None,
) -> Recheck:
    """Compare the items of the purged ``containers`` with their documents.

    ``containers`` are the purged partitions (see ``changes.partition_column``). When they
    are not the documents' containers, as teams hold channels, ``partition_of`` maps
    each known document container to its partition. ``files`` are the live files up to
    the end of the purge's chunk. ``changed`` contains the versions the update already
    writes for this chunk, so their items are skipped here. ``searcher`` shows the index
    as it was before this chunk.
    """
    workload = TABLE_WORKLOADS[table]
    located = container_versions(lake, table, files, containers)
    documents_in = set(containers)
    if partition_column(table) != ITEM_TABLES[table][0]:
        known = partition_of or {}
        documents_in = {item for item, partition in known.items() if partition in containers}
        documents_in |= {row["container_id"] for row in located.identities()}
    indexed = indexed_versions(searcher, schema, workload, documents_in)
    changed_ids = {doc_id_of(workload, *key) for key in changed.keys_in(documents_in)}
    live_ids = {
        doc_id_of(workload, row["container_id"], row["item_id"]) for row in located.identities()
    }

    def stale(row: dict[str, Any]) -> bool:
        doc_id = doc_id_of(workload, row["container_id"], row["item_id"])
        if doc_id in changed_ids:
            return False
        return indexed.get(doc_id) != version_identity(
            row["captured_at"], row["run_id"], row["deleted_at"]
        )

    removed = sorted(set(indexed) - live_ids - changed_ids)
    result = Recheck(versions=located.where(stale), removed=removed)
    logger.info(
        "%d purged partitions of %s: %d documents to write again, %d to delete",
        len(containers),
        table,
        len(result.versions),
        len(removed),
    )
    return result


def version_identity(captured_at: Any, run_id: Any, deleted_at: Any) -> VersionIdentity:
    return (index_date(captured_at), run_id, index_date(deleted_at))


def indexed_versions(
    searcher: tantivy.Searcher, schema: tantivy.Schema, workload: str, containers: Collection[str]
) -> dict[str, VersionIdentity]:
    """Return ``doc_id`` → version identity of every document in ``containers``."""
    found: dict[str, VersionIdentity] = {}
    for container in sorted(containers):
        query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Must, _keyword_term(schema, "workload", workload)),
                (tantivy.Occur.Must, _keyword_term(schema, "container_id", container)),
            ]
        )
        total = int(getattr(searcher.search(query, limit=1, count=True), "count", 0) or 0)
        if not total:
            continue
        for _, address in searcher.search(query, limit=total).hits:
            stored = searcher.doc(address).to_dict()
            # The keyword analyzer lowercases, so ids differing only in case match too.
            if _first(stored, "container_id") != container:
                continue
            found[str(_first(stored, "doc_id"))] = version_identity(
                _first(stored, "captured_at"),
                _first(stored, "run_id"),
                _first(stored, "deleted_at"),
            )
    return found


def _keyword_term(schema: tantivy.Schema, name: str, value: str) -> tantivy.Query:
    return tantivy.Query.term_query(schema, name, fields.analyze_keyword(value)[0])


def _first(stored: Mapping[str, Sequence[Any]], name: str) -> Any:
    values = stored.get(name) or [None]
    return values[0]

"""Run a KQL query against the lake's search index and return the matching items."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import tantivy

from m365lake.lake import Lake
from m365lake.search.index import OpenIndex, open_index

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 100

HIT_COLUMNS = (
    "workload",
    "container_id",
    "item_id",
    "captured_at",
    "run_id",
    "deleted_at",
    "title",
    "custodian",
    "size",
    "partially_indexed",
    "score",
)


@dataclass(frozen=True)
class Hit:
    """One matching item, with the identity and version that join it to the lake's rows.

    ``(container_id, item_id, captured_at)`` is a row of ``message_versions``, where
    ``container_id`` is the mailbox id, or of ``file_versions``, where it is the drive id.
    An item the tenant has not deleted is also in ``messages`` or ``files``.
    """

    doc_id: str
    workload: str
    container_id: str
    item_id: str
    captured_at: dt.datetime | None
    run_id: str | None
    deleted_at: dt.datetime | None
    title: str | None
    """The subject of a message, event or Teams message, a file's name or a contact's name.

    A Teams reply, which has no subject, is titled by its first words, or by its channel
    when it has no text."""
    custodian: str | None
    location: str | None
    size: int | None
    partially_indexed: bool
    score: float

    def row(self) -> tuple[Any, ...]:
        """Return the values named by ``HIT_COLUMNS``."""
        return tuple(getattr(self, column) for column in HIT_COLUMNS)


@dataclass(frozen=True)
class SearchResult:
    """The top hits of a query and how many items match it in all."""

    query: str
    total: int
    hits: list[Hit]
    index_seq: int
    """The lake commit the index is up to date with."""
    lake_seq: int
    """The lake's newest commit."""
    commits_behind: int = 0
    """Commits after ``index_seq`` with items that were not searched (see ``OpenIndex``)."""


def compile_kql(query: str, schema: tantivy.Schema) -> tantivy.Query:
    """Parse ``query`` and compile it for ``schema``; KqlSyntaxError gives the failing position."""
    from m365lake.search.kql import compile_query, parse

    compiled: tantivy.Query = compile_query(parse(query), schema)
    return compiled


def live_only(query: tantivy.Query, schema: tantivy.Schema) -> tantivy.Query:
    """Restrict ``query`` to items the tenant has not deleted (no ``deleted_at``)."""
    deleted = tantivy.Query.range_query(
        schema,
        "deleted_at",
        tantivy.FieldType.Date,
        tantivy.MIN_DATETIME,
        tantivy.MAX_DATETIME,
    )
    return tantivy.Query.boolean_query(
        [(tantivy.Occur.Must, query), (tantivy.Occur.MustNot, deleted)]
    )


def prepare_query(opened: OpenIndex, query: str, *, include_deleted: bool = True) -> tantivy.Query:
    """Compile ``query`` for ``opened``, leaving out deleted items unless ``include_deleted``."""
    schema = opened.index.schema
    compiled = compile_kql(query, schema)
    return compiled if include_deleted else live_only(compiled, schema)


def search(
    lake: Lake, query: str, *, limit: int = DEFAULT_LIMIT, include_deleted: bool = True
) -> SearchResult:
    """Return the ``limit`` best-scoring items matching the KQL ``query`` and the total count.

    Items the tenant deleted are included (with ``deleted_at``) unless ``include_deleted``
    is false. Raises KqlSyntaxError for a query that does not parse and SearchIndexError
    when the lake has no index.
    """
    if limit < 0:
        raise ValueError(f"limit must be zero or more, got {limit}")
    opened = open_index(lake)
    compiled = prepare_query(opened, query, include_deleted=include_deleted)
    searcher = opened.index.searcher()
    # Tantivy's top-docs collector rejects a limit of 0, so the count comes with one hit.
    result = searcher.search(compiled, limit=max(limit, 1), count=True)
    hits = [_hit(searcher, score, address) for score, address in result.hits[:limit]]
    # tantivy-py 0.27's type stubs omit SearchResult.count.
    total = int(getattr(result, "count", 0) or 0)
    logger.info("search matched %d items", total)
    return SearchResult(
        query=query,
        total=total,
        hits=hits,
        index_seq=opened.state.manifest_seq,
        lake_seq=opened.lake_seq,
        commits_behind=opened.commits_behind,
    )


def _hit(searcher: tantivy.Searcher, score: float, address: tantivy.DocAddress) -> Hit:
    stored = searcher.doc(address).to_dict()

    def first(name: str) -> Any:
        values = stored.get(name) or [None]
        return values[0]

    return Hit(
        doc_id=str(first("doc_id")),
        workload=str(first("workload")),
        container_id=str(first("container_id")),
        item_id=str(first("item_id")),
        captured_at=first("captured_at"),
        run_id=first("run_id"),
        deleted_at=first("deleted_at"),
        title=first("subject") or first("filename") or first("displayname") or first("hit_title"),
        custodian=first("custodian_key"),
        location=first("location_key"),
        size=first("size"),
        partially_indexed=bool(first("partially_indexed")),
        score=float(score),
    )

"""Searches that a person runs, recorded in the audit trail as compliance actions.

``search`` and ``search_statistics`` have no side effects, so library code that searches
for its own purposes leaves no audit event (for example, resolving the items of a
query hold). The functions here run the same search, then append one audit event with the
actor, the query, its options and the result counts. The event is committed before the
results are returned, so a caller never sees results of a search that the trail lacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from m365lake.discovery import audit
from m365lake.discovery.records import check_actor
from m365lake.lake import Lake
from m365lake.search.hits import DEFAULT_LIMIT, SearchResult, search
from m365lake.search.stats import SearchStatistics, search_statistics

SEARCH = audit.SEARCH
SEARCH_STATISTICS = "search.statistics"
"""Audit action of a statistics report (``audit`` defines no name for it)."""


@dataclass(frozen=True)
class AuditedSearch:
    result: SearchResult
    event: audit.AuditEvent


@dataclass(frozen=True)
class AuditedStatistics:
    statistics: SearchStatistics
    event: audit.AuditEvent


def search_audited(
    lake: Lake,
    query: str,
    *,
    actor: str,
    limit: int = DEFAULT_LIMIT,
    include_deleted: bool = True,
) -> AuditedSearch:
    """Run ``search`` and record it as a ``search`` audit event by ``actor``.

    The event's parameters are ``kql``, ``limit``, ``include_deleted`` and ``index_seq``
    (the lake commit the index was up to date with). Its counts are ``hits``, the
    matching items, and ``listed``, the items returned. A query that does not parse
    raises KqlSyntaxError and an empty ``actor`` raises InvalidRequestError, both before
    anything is recorded.
    """
    actor = check_actor(actor)
    result = search(lake, query, limit=limit, include_deleted=include_deleted)
    event = audit.record_event(
        lake,
        actor,
        SEARCH,
        {
            "kql": query,
            "limit": limit,
            "include_deleted": include_deleted,
            "index_seq": result.index_seq,
        },
        {"hits": result.total, "listed": len(result.hits)},
    )
    return AuditedSearch(result=result, event=event)


def search_statistics_audited(
    lake: Lake,
    query: str,
    keywords: Sequence[str] = (),
    *,
    actor: str,
    include_deleted: bool = True,
) -> AuditedStatistics:
    """Run ``search_statistics`` and record it as a ``search.statistics`` audit event.

    The event's parameters are ``kql``, ``keywords``, ``include_deleted`` and
    ``index_seq``. Its counts are the query's totals: ``hits`` (matching items),
    ``bytes`` (their size), ``custodians`` and ``locations`` (groups with hits) and
    ``partially_indexed`` (hits whose text was not all extracted). Errors are raised
    before anything is recorded, as in ``search_audited``.
    """
    actor = check_actor(actor)
    statistics = search_statistics(lake, query, keywords, include_deleted=include_deleted)
    event = audit.record_event(
        lake,
        actor,
        SEARCH_STATISTICS,
        {
            "kql": query,
            "keywords": list(keywords),
            "include_deleted": include_deleted,
            "index_seq": statistics.index_seq,
        },
        {
            "hits": statistics.total.items,
            "bytes": statistics.total.bytes,
            "custodians": len(statistics.custodians),
            "locations": len(statistics.locations),
            "partially_indexed": statistics.partially_indexed_matched.items,
        },
    )
    return AuditedStatistics(statistics=statistics, event=event)

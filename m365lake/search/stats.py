"""Search statistics: items and bytes per keyword, custodian and location, as Purview reports.

For a query and a list of keywords (each itself KQL), the report gives:

- the query alone (the total), then each keyword ANDed with the query: matching items,
  their total size, and the items and bytes matched by that keyword and by no other
  keyword of the list ("unique");
- the query's hits per custodian and per location;
- partially indexed items: those among the hits, and those in scope, which is every
  item in the searched locations. A search covers the whole archive, so the scope is
  the whole index (without deleted items when they are excluded).

Counts and sizes come from Tantivy aggregations over the fast fields ``custodian_key``,
``location_key`` and ``size``, so no document is fetched.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import pyarrow as pa
import tantivy

from m365lake.lake import Lake
from m365lake.search.hits import compile_kql, live_only, prepare_query
from m365lake.search.index import OpenIndex, count_matches, open_index

# Groups listed per report; the rest are summed into one OTHER_GROUPS row. 65,000 is
# also the default bucket limit of Tantivy's aggregations.
MAX_GROUPS = 65_000
OTHER_GROUPS = "(other)"
NO_VALUE = ""
"""Group name of items without a custodian (SharePoint site files have none)."""
NO_VALUE_LABEL = "(none)"
"""The label ``rows()`` shows for ``NO_VALUE``, so a table or CSV has no blank name."""

COLUMNS = ("section", "name", "items", "bytes", "unique_items", "unique_bytes")


@dataclass(frozen=True)
class Counts:
    items: int
    bytes: int


@dataclass(frozen=True)
class KeywordStatistics:
    """One keyword's hits ANDed with the query; ``unique_*`` count items no other keyword hit."""

    keyword: str
    items: int
    bytes: int
    unique_items: int
    unique_bytes: int


@dataclass(frozen=True)
class GroupStatistics:
    """Hits of the query in one custodian or location; ``name`` is empty for none."""

    name: str
    items: int
    bytes: int


@dataclass(frozen=True)
class SearchStatistics:
    """The statistics of one query: see the module documentation for each part."""

    query: str
    total: Counts
    keywords: list[KeywordStatistics] = field(default_factory=list)
    custodians: list[GroupStatistics] = field(default_factory=list)
    locations: list[GroupStatistics] = field(default_factory=list)
    partially_indexed_matched: Counts = Counts(0, 0)
    partially_indexed_in_scope: Counts = Counts(0, 0)
    index_seq: int = 0
    lake_seq: int = 0
    commits_behind: int = 0
    """Commits with items that the index does not contain yet (see ``OpenIndex``)."""

    def rows(self) -> list[tuple[Any, ...]]:
        """Return one row per figure, with the columns named by ``COLUMNS``."""
        rows: list[tuple[Any, ...]] = [
            ("query", self.query, self.total.items, self.total.bytes, None, None)
        ]
        rows += [
            ("keyword", k.keyword, k.items, k.bytes, k.unique_items, k.unique_bytes)
            for k in self.keywords
        ]
        for section, groups in (("custodian", self.custodians), ("location", self.locations)):
            rows += [
                (section, group.name or NO_VALUE_LABEL, group.items, group.bytes, None, None)
                for group in groups
            ]
        matched, in_scope = self.partially_indexed_matched, self.partially_indexed_in_scope
        rows.append(("partially indexed", "matched", matched.items, matched.bytes, None, None))
        rows.append(("partially indexed", "in scope", in_scope.items, in_scope.bytes, None, None))
        return rows

    def to_arrow(self) -> pa.Table:
        """Return ``rows()`` as a pyarrow table."""
        columns = list(zip(*self.rows(), strict=True))
        types = [pa.string(), pa.string(), pa.int64(), pa.int64(), pa.int64(), pa.int64()]
        return pa.table(
            [pa.array(values, type=kind) for values, kind in zip(columns, types, strict=True)],
            names=list(COLUMNS),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the statistics as JSON-ready nested dicts and lists."""
        return asdict(self)

    def write_csv(self, stream: IO[str]) -> None:
        writer = csv.writer(stream)
        writer.writerow(COLUMNS)
        writer.writerows(self.rows())


def search_statistics(
    lake: Lake, query: str, keywords: Sequence[str] = (), *, include_deleted: bool = True
) -> SearchStatistics:
    """Compute the statistics of the KQL ``query`` and each of ``keywords`` over the index.

    Raises KqlSyntaxError for the query or a keyword that does not parse, naming which.
    """
    opened = open_index(lake)
    schema = opened.index.schema
    base = prepare_query(opened, query, include_deleted=include_deleted)
    keyword_queries = [compile_kql(keyword, schema) for keyword in keywords]
    searcher = opened.index.searcher()

    totals = searcher.aggregate(base, _group_aggregation())
    total = _counts(searcher, base)
    keyword_rows = [
        _keyword_statistics(searcher, base, keyword, keyword_queries, position)
        for position, keyword in enumerate(keywords)
    ]
    partial = tantivy.Query.term_query(schema, "partially_indexed", True)
    scope = tantivy.Query.all_query()
    if not include_deleted:
        scope = live_only(scope, schema)
    return SearchStatistics(
        query=query,
        total=total,
        keywords=keyword_rows,
        custodians=_groups(opened, searcher, totals["custodians"], "custodian_key", total),
        locations=_groups(opened, searcher, totals["locations"], "location_key", total),
        partially_indexed_matched=_counts(searcher, _and(base, partial)),
        partially_indexed_in_scope=_counts(searcher, _and(scope, partial)),
        index_seq=opened.state.manifest_seq,
        lake_seq=opened.lake_seq,
        commits_behind=opened.commits_behind,
    )


def _and(*queries: tantivy.Query) -> tantivy.Query:
    return tantivy.Query.boolean_query([(tantivy.Occur.Must, query) for query in queries])


def _keyword_statistics(
    searcher: tantivy.Searcher,
    base: tantivy.Query,
    keyword: str,
    keyword_queries: Sequence[tantivy.Query],
    position: int,
) -> KeywordStatistics:
    matched = _and(base, keyword_queries[position])
    others = [query for number, query in enumerate(keyword_queries) if number != position]
    unique = matched
    if others:
        unique = tantivy.Query.boolean_query(
            [(tantivy.Occur.Must, matched)] + [(tantivy.Occur.MustNot, query) for query in others]
        )
    counts = _counts(searcher, matched)
    unique_counts = _counts(searcher, unique)
    return KeywordStatistics(
        keyword=keyword,
        items=counts.items,
        bytes=counts.bytes,
        unique_items=unique_counts.items,
        unique_bytes=unique_counts.bytes,
    )


def _counts(searcher: tantivy.Searcher, query: tantivy.Query) -> Counts:
    result = searcher.aggregate(query, {"bytes": {"sum": {"field": "size"}}})
    return Counts(items=count_matches(searcher, query), bytes=_whole(result["bytes"]["value"]))


def _group_aggregation() -> dict[str, Any]:
    def terms(field_name: str) -> dict[str, Any]:
        return {
            "terms": {"field": field_name, "size": MAX_GROUPS, "missing": NO_VALUE},
            "aggs": {"bytes": {"sum": {"field": "size"}}},
        }

    return {"custodians": terms("custodian_key"), "locations": terms("location_key")}


def _groups(
    opened: OpenIndex,
    searcher: tantivy.Searcher,
    result: dict[str, Any],
    field_name: str,
    total: Counts,
) -> list[GroupStatistics]:
    groups = [
        GroupStatistics(
            name=_stored_spelling(opened, searcher, field_name, str(bucket["key"])),
            items=int(bucket["doc_count"]),
            bytes=_whole(bucket["bytes"]["value"]),
        )
        for bucket in result["buckets"]
    ]
    groups.sort(key=lambda group: (-group.items, group.name))
    others = int(result.get("sum_other_doc_count") or 0)
    if others:
        listed_bytes = sum(group.bytes for group in groups)
        groups.append(GroupStatistics(OTHER_GROUPS, others, total.bytes - listed_bytes))
    return groups


def _stored_spelling(
    opened: OpenIndex, searcher: tantivy.Searcher, field_name: str, key: str
) -> str:
    """Return the value as stored (the fast field keeps it lowercased), from one document."""
    if key == NO_VALUE:
        return NO_VALUE
    term = tantivy.Query.term_query(opened.index.schema, field_name, key)
    hits = searcher.search(term, limit=1, count=False).hits
    if not hits:
        return key
    values = searcher.doc(hits[0][1]).to_dict().get(field_name) or [key]
    return str(values[0])


def _whole(value: Any) -> int:
    # Tantivy sums in float64, exact for totals below 2**53 bytes (8 PiB).
    return round(float(value or 0))

"""Search and search statistics over a small index of hand-made documents."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest

from m365lake.errors import KqlSyntaxError
from m365lake.lake import Lake
from m365lake.search import fields, stats
from m365lake.search.hits import search
from m365lake.search.index import (
    IndexState,
    index_path,
    open_tantivy,
    schema_digest,
    write_state,
)
from m365lake.search.stats import COLUMNS, Counts, search_statistics

CAPTURED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DELETED = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)


def document(
    number: int,
    text: str,
    size: int,
    *,
    custodian: str | None,
    location: str,
    partial: bool = False,
    deleted: bool = False,
) -> fields.SearchDocument:
    values: dict[str, list[fields.FieldValue]] = {
        "doc_id": [f"mail:box:{number}"],
        "workload": ["mail"],
        "container_id": ["box"],
        "item_id": [str(number)],
        "captured_at": [CAPTURED],
        "run_id": ["run-1"],
        "location_key": [location],
        "partially_indexed": [partial],
        "subject": [f"item {number}"],
        "body": [text],
        "size": [size],
    }
    if custodian:
        values["custodian_key"] = [custodian]
    if deleted:
        values["deleted_at"] = [DELETED]
    return values


DOCUMENTS = [
    document(1, "alpha beta", 100, custodian="Ann@Contoso.example", location="Ann@Contoso.example"),
    document(2, "alpha", 200, custodian="Ann@Contoso.example", location="Ann@Contoso.example"),
    document(3, "beta gamma", 400, custodian="bob@contoso.example", location="bob@contoso.example"),
    document(4, "gamma", 800, custodian=None, location="https://contoso.example/sites/x"),
    document(
        5,
        "alpha gamma",
        1600,
        custodian="bob@contoso.example",
        location="bob@contoso.example",
        partial=True,
    ),
    document(
        6,
        "delta",
        3200,
        custodian="bob@contoso.example",
        location="bob@contoso.example",
        partial=True,
        deleted=True,
    ),
]


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = Lake.open(tmp_path / "lake")
    folder = index_path(lake)
    index = open_tantivy(folder, create=True)
    writer = index.writer(heap_size=15_000_000, num_threads=1)
    for built in DOCUMENTS:
        writer.add_document(fields.to_tantivy_document(built))
    writer.commit()
    writer.wait_merging_threads()
    write_state(folder, IndexState(0, None, schema_digest(), CAPTURED.isoformat()))
    return lake


def test_search_counts_and_hits(lake: Lake):
    result = search(lake, "alpha", limit=2)

    assert result.total == 3
    assert len(result.hits) == 2
    assert {hit.item_id for hit in result.hits} <= {"1", "2", "5"}
    assert result.hits[0].captured_at == CAPTURED
    assert result.hits[0].title.startswith("item ")
    assert result.commits_behind == 0


def test_search_limit_zero_counts_only(lake: Lake):
    result = search(lake, "alpha", limit=0)

    assert result.total == 3
    assert result.hits == []


def test_search_deleted_items_optional(lake: Lake):
    included = search(lake, "delta")
    excluded = search(lake, "delta", include_deleted=False)

    assert included.total == 1
    assert included.hits[0].deleted_at == DELETED
    assert excluded.total == 0


def test_search_bad_kql_raises(lake: Lake):
    with pytest.raises(KqlSyntaxError):
        search(lake, "alpha AND (")


def test_statistics_total_and_keywords(lake: Lake):
    statistics = search_statistics(lake, "alpha OR gamma", ["alpha", "gamma", "beta"])

    assert statistics.total == Counts(items=5, bytes=100 + 200 + 400 + 800 + 1600)
    alpha, gamma, beta = statistics.keywords
    assert (alpha.items, alpha.bytes) == (3, 1900)
    assert (alpha.unique_items, alpha.unique_bytes) == (1, 200), "1 has beta, 5 has gamma"
    assert (gamma.items, gamma.bytes) == (3, 2800)
    assert (gamma.unique_items, gamma.unique_bytes) == (1, 800), "3 has beta, 5 has alpha"
    assert (beta.items, beta.bytes) == (2, 500)
    assert (beta.unique_items, beta.unique_bytes) == (0, 0)


def test_statistics_per_custodian_and_location(lake: Lake):
    statistics = search_statistics(lake, "alpha OR gamma")

    custodians = {group.name: (group.items, group.bytes) for group in statistics.custodians}
    locations = {group.name: (group.items, group.bytes) for group in statistics.locations}
    assert custodians == {
        "Ann@Contoso.example": (2, 300),
        "bob@contoso.example": (2, 2000),
        "": (1, 800),
    }
    assert locations == {
        "Ann@Contoso.example": (2, 300),
        "bob@contoso.example": (2, 2000),
        "https://contoso.example/sites/x": (1, 800),
    }


def test_statistics_partially_indexed(lake: Lake):
    statistics = search_statistics(lake, "alpha")
    live_only = search_statistics(lake, "alpha", include_deleted=False)

    assert statistics.partially_indexed_matched == Counts(1, 1600)
    assert statistics.partially_indexed_in_scope == Counts(2, 4800)
    assert live_only.partially_indexed_in_scope == Counts(1, 1600)


def test_statistics_rows_arrow_and_csv(lake: Lake):
    statistics = search_statistics(lake, "gamma", ["alpha"])
    stream = io.StringIO()

    statistics.write_csv(stream)
    table = statistics.to_arrow()
    rows = statistics.rows()

    assert table.column_names == list(COLUMNS)
    assert table.num_rows == len(rows)
    assert rows[0] == ("query", "gamma", 3, 2800, None, None)
    assert ("custodian", "(none)", 1, 800, None, None) in rows
    assert rows[-1][:2] == ("partially indexed", "in scope")
    assert stream.getvalue().splitlines()[0] == ",".join(COLUMNS)
    assert statistics.to_dict()["keywords"][0]["keyword"] == "alpha"


def test_statistics_bad_keyword_raises(lake: Lake):
    with pytest.raises(KqlSyntaxError) as raised:
        search_statistics(lake, "alpha", ["beta", "subject:("])

    assert raised.value.query == "subject:("


def test_statistics_groups_beyond_limit_summed(lake: Lake, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(stats, "MAX_GROUPS", 1)

    statistics = search_statistics(lake, "alpha OR gamma")

    assert len(statistics.custodians) == 2
    listed, other = statistics.custodians
    assert other.name == stats.OTHER_GROUPS
    assert listed.items + other.items == statistics.total.items
    assert listed.bytes + other.bytes == statistics.total.bytes

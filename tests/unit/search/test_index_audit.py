"""Searches a person runs are audited; searches the library runs for itself are not."""

from __future__ import annotations

from pathlib import Path

import pytest

from m365lake.discovery import create_case, place_hold
from m365lake.discovery.audit_chain import read_audit_events
from m365lake.discovery.coverage import HoldCoverage
from m365lake.discovery.errors import InvalidRequestError
from m365lake.errors import KqlSyntaxError
from m365lake.lake import Lake
from m365lake.search import fields
from m365lake.search.audited import (
    SEARCH,
    SEARCH_STATISTICS,
    search_audited,
    search_statistics_audited,
)
from m365lake.search.hits import search
from m365lake.search.index import IndexState, index_path, open_tantivy, schema_digest, write_state
from m365lake.search.stats import search_statistics
from tests.unit.search.test_index_stats import CAPTURED, DOCUMENTS

SEARCH_ACTIONS = (SEARCH, SEARCH_STATISTICS)


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


def search_events(lake: Lake) -> list[tuple[str, str, dict[str, object], dict[str, int]]]:
    return [
        (event.actor, event.action, event.parameters_dict(), event.counts_dict())
        for event in read_audit_events(lake)
        if event.action in SEARCH_ACTIONS
    ]


def test_audited_searches_recorded_in_order(lake: Lake):
    first = search_audited(lake, "alpha", actor="carol", limit=2)
    statistics = search_statistics_audited(
        lake, "alpha OR gamma", ["alpha", "gamma"], actor="dave", include_deleted=False
    )
    second = search_audited(lake, "delta", actor="carol", include_deleted=False)

    assert first.result.total == 3
    assert statistics.statistics.total.items == 5
    assert second.result.total == 0
    assert first.event.seq < statistics.event.seq < second.event.seq
    assert search_events(lake) == [
        (
            "carol",
            "search",
            {"kql": "alpha", "limit": 2, "include_deleted": True, "index_seq": 0},
            {"hits": 3, "listed": 2},
        ),
        (
            "dave",
            "search.statistics",
            {
                "kql": "alpha OR gamma",
                "keywords": ["alpha", "gamma"],
                "include_deleted": False,
                "index_seq": 0,
            },
            {
                "hits": 5,
                "bytes": 100 + 200 + 400 + 800 + 1600,
                "custodians": 3,
                "locations": 3,
                "partially_indexed": 1,
            },
        ),
        (
            "carol",
            "search",
            {"kql": "delta", "limit": 100, "include_deleted": False, "index_seq": 0},
            {"hits": 0, "listed": 0},
        ),
    ]


def test_library_search_writes_no_event(lake: Lake):
    head = lake.head().seq

    search(lake, "alpha")
    search_statistics(lake, "alpha", ["beta"])

    assert lake.head().seq == head
    assert search_events(lake) == []


def test_invalid_query_records_nothing(lake: Lake):
    with pytest.raises(KqlSyntaxError):
        search_audited(lake, "alpha AND (", actor="carol")
    with pytest.raises(KqlSyntaxError):
        search_statistics_audited(lake, "alpha", ["gamma OR"], actor="carol")

    assert search_events(lake) == []


def test_audit_commits_do_not_put_index_behind(lake: Lake):
    search_audited(lake, "alpha", actor="carol")

    later = search_audited(lake, "alpha", actor="carol")

    assert later.result.lake_seq > later.result.index_seq
    assert later.result.commits_behind == 0
    assert search_statistics(lake, "alpha").commits_behind == 0


def test_query_hold_resolution_not_audited(lake: Lake):
    create_case(lake, "Matter", actor="carol", case_id="C")
    place_hold(lake, "C", actor="carol", kql="alpha", all_locations=True)

    coverage = HoldCoverage.load(lake)

    assert len(coverage.holds) == 1
    assert search_events(lake) == []
    assert [event.action for event in read_audit_events(lake)] == ["case.create", "hold"]


def test_actor_required(lake: Lake):
    with pytest.raises(InvalidRequestError, match="actor"):
        search_audited(lake, "alpha", actor="  ")
    with pytest.raises(InvalidRequestError, match="actor"):
        search_statistics_audited(lake, "alpha", actor="")

    assert search_events(lake) == []

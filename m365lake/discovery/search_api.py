"""Lazy access to the KQL parser and the search index, which other modules provide.

Cases validate saved queries with ``m365lake.search.kql.parse`` when that package is
installed, and query holds resolve through ``m365lake.search.search``. Both are imported
only when needed, so cases and custodian holds work without the search package.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from m365lake.errors import SearchIndexError
from m365lake.lake import Lake

logger = logging.getLogger(__name__)


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def validate_kql(query: str) -> bool:
    """Parse ``query`` with the KQL parser; return False when no parser is installed.

    Raises KqlSyntaxError (or UnknownPropertyError) from the parser when the query is
    invalid.
    """
    if not _module_available("m365lake.search.kql"):
        logger.info("m365lake.search.kql is not installed; the KQL query was not validated")
        return False
    module = importlib.import_module("m365lake.search.kql")
    module.parse(query)
    return True


@dataclass(frozen=True)
class SearchHit:
    """The identity of one item a search matched."""

    workload: str
    """``mail``, ``files``, ``calendar``, ``contacts`` or ``teams``."""
    container_id: str
    item_id: str
    captured_at: datetime | None


def _search_function() -> Any:
    function = None
    try:
        function = getattr(importlib.import_module("m365lake.search"), "search", None)
    except ModuleNotFoundError as error:
        logger.info("the search package could not be imported: %s", error)
    if function is None:
        raise SearchIndexError(
            "a query hold needs the search index, but m365lake.search provides no search() "
            "function in this installation. Install the search package and build the "
            "index, or use a custodian hold, which needs no index"
        )
    return function


ITEM_TABLES = ("messages", "drive_items", "events", "contacts", "channel_messages")


def _unindexed_commits(lake: Lake, index_seq: int) -> list[int]:
    """Return the commits after ``index_seq`` that added rows to an item table."""
    return [
        manifest["seq"]
        for manifest in lake.manifests()
        if manifest["seq"] > index_seq
        and any(entry.get("table") in ITEM_TABLES for entry in manifest.get("files", []))
    ]


def search_hits(lake: Lake, kql: str, *, purpose: str = "a query hold") -> list[SearchHit]:
    """Return every item of the search index that ``kql`` matches, deleted items included.

    Raises SearchIndexError when the index is missing, or when it has not yet indexed a
    commit that added items (messages, drive items, events, contacts or channel
    messages), because items in that commit could match. ``purpose`` names what would
    miss them in that message, such as "a query hold" or "the restore".
    """
    function = _search_function()
    counted = function(lake, kql, limit=0, include_deleted=True)
    behind = _unindexed_commits(lake, int(counted.index_seq))
    if behind:
        shown = ", ".join(str(seq) for seq in behind[:5]) + (" …" if len(behind) > 5 else "")
        raise SearchIndexError(
            f"the search index is up to date with commit {counted.index_seq}, but commits "
            f"{shown} added items it has not indexed, so {purpose} could miss them. "
            "Update the index first (m365lake index), then run this again"
        )
    # Asking for exactly the total keeps Tantivy's top-hits buffer no larger than needed.
    result = function(lake, kql, limit=int(counted.total), include_deleted=True)
    return [
        SearchHit(
            workload=str(hit.workload),
            container_id=str(hit.container_id),
            item_id=str(hit.item_id),
            captured_at=hit.captured_at,
        )
        for hit in result.hits
    ]

"""Compliance search over the lake: a Tantivy index fed from commits, KQL, hit statistics.

``update_index`` builds or updates ``<lake root>/index/``, and ``optimize_index`` merges
its segments. ``search`` runs a KQL query, and ``search_statistics`` reports items and
bytes per keyword, custodian and location. ``search_audited`` and
``search_statistics_audited`` also record the search in the audit trail, for searches
that a person runs.

The names are imported on first use, because the extraction worker processes import
``m365lake.search.extract`` and should not load DuckDB and the index code with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from m365lake.search.audited import search_audited, search_statistics_audited
    from m365lake.search.hits import Hit, SearchResult, search
    from m365lake.search.index import IndexUpdate, update_index
    from m365lake.search.optimize import IndexOptimization, optimize_index
    from m365lake.search.stats import SearchStatistics, search_statistics

__all__ = [
    "Hit",
    "IndexOptimization",
    "IndexUpdate",
    "SearchResult",
    "SearchStatistics",
    "optimize_index",
    "search",
    "search_audited",
    "search_statistics",
    "search_statistics_audited",
    "update_index",
]

_MODULES = {
    "Hit": "m365lake.search.hits",
    "SearchResult": "m365lake.search.hits",
    "search": "m365lake.search.hits",
    "IndexUpdate": "m365lake.search.index",
    "update_index": "m365lake.search.index",
    "IndexOptimization": "m365lake.search.optimize",
    "optimize_index": "m365lake.search.optimize",
    "search_audited": "m365lake.search.audited",
    "search_statistics_audited": "m365lake.search.audited",
    "SearchStatistics": "m365lake.search.stats",
    "search_statistics": "m365lake.search.stats",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

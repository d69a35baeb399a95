"""KQL (Microsoft Purview's keyword query language) for the search index.

``parse`` turns query text into the syntax tree in ``ast``; ``compile_query`` turns the
tree into a Tantivy query over the fields in ``m365lake.search.fields``; ``matches``
evaluates the same tree over one document in plain Python, as a test oracle.
"""

from m365lake.search.kql.ast import (
    And,
    Compare,
    DateSpan,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Range,
    RelativeDate,
    Term,
)
from m365lake.search.kql.compiler import compile_query
from m365lake.search.kql.evaluate import PreparedDocument, matches
from m365lake.search.kql.parser import (
    DEFAULT_NEAR_DISTANCE,
    MAX_DEPTH,
    MAX_NEAR_DISTANCE,
    MAX_QUERY_CHARS,
    MAX_TERMS,
    MIN_PREFIX_CHARS,
    parse,
)

__all__ = [
    "DEFAULT_NEAR_DISTANCE",
    "MAX_DEPTH",
    "MAX_NEAR_DISTANCE",
    "MAX_QUERY_CHARS",
    "MAX_TERMS",
    "MIN_PREFIX_CHARS",
    "And",
    "Compare",
    "DateSpan",
    "Near",
    "Node",
    "Not",
    "Or",
    "Phrase",
    "Prefix",
    "PreparedDocument",
    "Range",
    "RelativeDate",
    "Term",
    "compile_query",
    "matches",
    "parse",
]

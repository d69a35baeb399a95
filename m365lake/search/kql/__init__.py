"""KQL, the keyword query language of Microsoft Purview searches, over the search index.

``parse`` turns query text into the syntax tree in ``ast``. ``compile_query`` turns the
tree into a Tantivy query over the fields in ``m365lake.search.fields``. ``matches``
evaluates the same tree over one document in plain Python and serves as the test oracle.

The dialect (operators are upper case, property names and values are case-insensitive):

=============================  ==========================================================
``budget report``              both words (implicit AND), in any free-text field
``budget AND report``          both; ``OR`` either; ``NOT x`` and ``-x`` exclude
``(a OR b) c``                 grouping; NEAR binds tightest, then NOT, AND, OR
``"q1 report"``                the words as a phrase, in order and adjacent
``budg*``                      words starting with ``budg`` (3 or more letters first)
``a NEAR(n) b``                at most n words between a and b, either order (n=8)
``a ONEAR(n) b``               the same with a before b
``from:jeff``                  a text property (``fields.PROPERTIES``)
``subject:(a OR b)``           a boolean expression inside one property
``from:a from:b``              same property side by side: OR (AND for other pairs)
``sent>=2001-05-01``           dates: ``= : < <= > >= <>`` and ``sent:a..b``
``received:"last month"``      today, yesterday, this/last week, month, year (UTC)
``size>1MB``                   bytes, with B, KB, MB, GB, TB suffixes (1 KB = 1024)
``hasattachment:true``         booleans: true/false, yes/no, 1/0
``importance:high``            high, normal (or medium), low
``kind:meetings``              email, docs, meetings, contacts, microsoftteams (others
                               are rejected)
=============================  ==========================================================
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

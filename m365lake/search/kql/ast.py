"""The KQL syntax tree: frozen dataclasses that ``parse`` returns and the compiler and oracle read.

Values are validated and normalised by the parser (property names lowercased, sizes in
bytes, absolute dates as UTC spans), so the compiler and the oracle never re-parse text.
Free-text and property text values keep the query's spelling; they are analyzed with the
index's analyzers when compiled or evaluated.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, TypeAlias


@dataclass(frozen=True)
class Term:
    """A bare word. ``property`` is None for free text (``fields.FREE_TEXT_FIELDS``).

    A word that analyzes to several tokens (``jeff.skilling@enron.com``) matches them as a
    phrase.
    """

    text: str
    property: str | None = None


@dataclass(frozen=True)
class Phrase:
    """A quoted phrase: its tokens in order, at the positions the analyzer gives them."""

    text: str
    property: str | None = None


@dataclass(frozen=True)
class Prefix:
    """A word with a trailing ``*``; ``text`` is the word without the ``*``."""

    text: str
    property: str | None = None


NearOperand: TypeAlias = Term | Phrase


@dataclass(frozen=True)
class Near:
    """``left NEAR(distance) right``: at most ``distance`` tokens between the two operands.

    Unordered unless ``ordered`` (``ONEAR``), in which case ``left`` comes first. Both
    operands have the same ``property``.
    """

    left: NearOperand
    right: NearOperand
    distance: int = 8
    ordered: bool = False


RelativeDateName: TypeAlias = Literal[
    "today",
    "yesterday",
    "this week",
    "last week",
    "this month",
    "last month",
    "this year",
    "last year",
]


@dataclass(frozen=True)
class DateSpan:
    """An absolute time span in UTC, ``start`` inclusive and ``end`` exclusive, in whole seconds.

    A bare date is the whole UTC day; a datetime is the minute or second it names.
    """

    start: dt.datetime
    end: dt.datetime


@dataclass(frozen=True)
class RelativeDate:
    """A date relative to the clock at compile or evaluation time (``sent:yesterday``)."""

    name: RelativeDateName


DateValue: TypeAlias = DateSpan | RelativeDate
CompareOp: TypeAlias = Literal["=", "<", "<=", ">", ">="]


@dataclass(frozen=True)
class Compare:
    """A restriction on a date, size or boolean property; ``:`` parses as ``=``.

    ``value`` is a ``DateValue`` for dates, an ``int`` (bytes) for sizes and a ``bool`` for
    booleans. A date or size value is a span (a day, a byte), so ``=`` means "inside the
    span", ``>`` "after its end" and ``>=`` "from its start".
    """

    property: str
    op: CompareOp
    value: DateValue | int | bool


@dataclass(frozen=True)
class Range:
    """``property:low..high`` on a date or size property, both ends inclusive spans."""

    property: str
    low: DateValue | int
    high: DateValue | int


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


Node: TypeAlias = Term | Phrase | Prefix | Near | Compare | Range | And | Or | Not

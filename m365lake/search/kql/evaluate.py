"""Evaluate a KQL syntax tree over one ``SearchDocument`` in plain Python: the test oracle.

``matches(node, document)`` must agree with the compiled Tantivy query on every document
the index receives, so it reproduces what the index stores rather than an idealised
reading: tokens from the index's analyzers, positions numbered across the values of a
multi-valued field the way Tantivy 0.27 numbers them (``analysis.value_positions``), and
dates truncated to whole seconds toward the epoch, as Tantivy's date fields store them.
It is meant for tests and for checking the index against the lake, not for serving
searches: it scans every document.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from itertools import chain

from m365lake.search.fields import FieldKind, FieldValue, SearchDocument
from m365lake.search.kql import values
from m365lake.search.kql.analysis import (
    PositionedToken,
    keyword_token,
    property_fields,
    property_kind,
    text_tokens,
    value_positions,
)
from m365lake.search.kql.ast import (
    And,
    Compare,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Range,
    Term,
)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


class PreparedDocument:
    """A ``SearchDocument`` with its analyzed fields cached, for evaluating many queries."""

    def __init__(self, document: SearchDocument) -> None:
        self.document = document
        self._positions: dict[str, dict[str, list[int]]] = {}
        self._keywords: dict[str, set[str]] = {}

    def values(self, field: str) -> Sequence[FieldValue]:
        return self.document.get(field, ())

    def positions(self, field: str) -> dict[str, list[int]]:
        """Return token -> positions for a full-text field."""
        if field not in self._positions:
            texts = [value for value in self.values(field) if isinstance(value, str)]
            self._positions[field] = value_positions(texts)
        return self._positions[field]

    def keywords(self, field: str) -> set[str]:
        """Return the tokens stored for a keyword field."""
        if field not in self._keywords:
            tokens = (
                keyword_token(value) for value in self.values(field) if isinstance(value, str)
            )
            self._keywords[field] = {token for token in tokens if token is not None}
        return self._keywords[field]


def matches(
    node: Node, document: SearchDocument | PreparedDocument, *, now: dt.datetime | None = None
) -> bool:
    """Return True when ``document`` matches ``node``.

    ``now`` anchors relative dates exactly as in ``compile_query``; pass the same value to
    both when comparing them.
    """
    prepared = document if isinstance(document, PreparedDocument) else PreparedDocument(document)
    if now is None:
        now = dt.datetime.now(dt.UTC)
    elif now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    return _evaluate(node, prepared, now)


def _evaluate(node: Node, document: PreparedDocument, now: dt.datetime) -> bool:
    if isinstance(node, And):
        return all(_evaluate(child, document, now) for child in node.children)
    if isinstance(node, Or):
        return any(_evaluate(child, document, now) for child in node.children)
    if isinstance(node, Not):
        return not _evaluate(node.child, document, now)
    if isinstance(node, Term | Phrase):
        return any(
            _text_matches(document, field, node.text, node.property)
            for field in property_fields(node.property)
        )
    if isinstance(node, Prefix):
        return any(
            _prefix_matches(document, field, node) for field in property_fields(node.property)
        )
    if isinstance(node, Near):
        return any(
            _near_matches(document, field, node) for field in property_fields(node.left.property)
        )
    if isinstance(node, Compare):
        return _compare_matches(document, node, now)
    return _range_matches(document, node, now)


# ---- text


def _text_matches(document: PreparedDocument, field: str, text: str, prop: str | None) -> bool:
    if property_kind(prop) is FieldKind.KEYWORD:
        token = keyword_token(text)
        return token is not None and token in document.keywords(field)
    tokens = text_tokens(text)
    return bool(tokens) and bool(_phrase_starts(document.positions(field), tokens))


def _phrase_starts(
    positions: dict[str, list[int]], tokens: list[PositionedToken], *, last_is_prefix: bool = False
) -> list[int]:
    """Return the positions where the phrase ``tokens`` starts (the first token's position).

    Each token must sit exactly at start + its relative position. With ``last_is_prefix``,
    the last token matches any stored token that begins with it.
    """
    sets = [set(positions.get(text, ())) for _, text in tokens]
    if last_is_prefix:
        last = tokens[-1][1]
        sets[-1] = set(
            chain.from_iterable(
                found for token, found in positions.items() if token.startswith(last)
            )
        )
    first_offset = tokens[0][0]
    starts = []
    for position in sorted(sets[0]):
        start = position - first_offset
        if all(start + offset in found for (offset, _), found in zip(tokens, sets, strict=True)):
            starts.append(start)
    return starts


def _prefix_matches(document: PreparedDocument, field: str, node: Prefix) -> bool:
    if property_kind(node.property) is FieldKind.KEYWORD:
        token = keyword_token(node.text)
        return token is not None and any(
            stored.startswith(token) for stored in document.keywords(field)
        )
    tokens = text_tokens(node.text)
    return bool(tokens) and bool(
        _phrase_starts(document.positions(field), tokens, last_is_prefix=True)
    )


def _near_matches(document: PreparedDocument, field: str, node: Near) -> bool:
    """Check that one operand starts 1 to distance + 1 positions after the other ends."""
    left = text_tokens(node.left.text)
    right = text_tokens(node.right.text)
    if not left or not right:
        return False
    positions = document.positions(field)
    left_spans = [(start, start + left[-1][0]) for start in _phrase_starts(positions, left)]
    right_spans = [(start, start + right[-1][0]) for start in _phrase_starts(positions, right)]

    def follows(first: list[tuple[int, int]], second: list[tuple[int, int]]) -> bool:
        return any(
            1 <= second_start - first_end <= node.distance + 1
            for _, first_end in first
            for second_start, _ in second
        )

    if follows(left_spans, right_spans):
        return True
    return not node.ordered and follows(right_spans, left_spans)


# ---- dates, sizes and booleans


def _compare_matches(document: PreparedDocument, node: Compare, now: dt.datetime) -> bool:
    kind = property_kind(node.property)
    fields = property_fields(node.property)
    if kind is FieldKind.BOOL:
        return any(
            isinstance(value, bool) and value is node.value
            for field in fields
            for value in document.values(field)
        )
    if kind is FieldKind.DATE:
        assert not isinstance(node.value, int)
        span = values.resolve_date(node.value, now)
        lower, upper = values.span_interval(node.op, span.start, span.end)
        return _dates_in(document, fields, lower, upper)
    assert isinstance(node.value, int) and not isinstance(node.value, bool)
    size_lower, size_upper = values.span_interval(node.op, node.value, node.value + 1)
    return _sizes_in(document, fields, size_lower, size_upper)


def _range_matches(document: PreparedDocument, node: Range, now: dt.datetime) -> bool:
    fields = property_fields(node.property)
    if property_kind(node.property) is FieldKind.DATE:
        assert not isinstance(node.low, int) and not isinstance(node.high, int)
        low = values.resolve_date(node.low, now)
        high = values.resolve_date(node.high, now)
        return _dates_in(document, fields, low.start, high.end)
    assert isinstance(node.low, int) and isinstance(node.high, int)
    return _sizes_in(document, fields, node.low, node.high + 1)


def _dates_in(
    document: PreparedDocument,
    fields: Sequence[str],
    lower: dt.datetime | None,
    upper: dt.datetime | None,
) -> bool:
    low = None if lower is None else _indexed_seconds(lower)
    high = None if upper is None else _indexed_seconds(upper)
    for field in fields:
        for value in document.values(field):
            if not isinstance(value, dt.datetime):
                continue
            seconds = _indexed_seconds(value)
            if (low is None or seconds >= low) and (high is None or seconds < high):
                return True
    return False


def _indexed_seconds(value: dt.datetime) -> int:
    """Return the whole seconds since the epoch that Tantivy stores, truncated toward zero.

    Checked against Tantivy 0.27: 1969-12-31T23:59:59.5Z is stored as 1970-01-01T00:00:00Z.
    """
    micros = (value - _EPOCH) // _MICROSECOND
    seconds = abs(micros) // 1_000_000
    return seconds if micros >= 0 else -seconds


def _sizes_in(
    document: PreparedDocument, fields: Sequence[str], lower: int | None, upper: int | None
) -> bool:
    for field in fields:
        for value in document.values(field):
            if not isinstance(value, int) or isinstance(value, bool):
                continue
            if (lower is None or value >= lower) and (upper is None or value < upper):
                return True
    return False

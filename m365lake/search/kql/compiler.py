"""Compile a KQL syntax tree to a Tantivy query with ``tantivy.Query`` constructors.

Query text is never handed to Tantivy's own query parser: every value is analyzed with the
index's analyzers here and becomes a term, phrase, regex or range query on named fields.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

import tantivy

from m365lake.search.fields import FieldKind
from m365lake.search.kql import values
from m365lake.search.kql.analysis import (
    PositionedToken,
    keyword_token,
    property_fields,
    property_kind,
    text_tokens,
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

Query = tantivy.Query
Occur = tantivy.Occur

# Characters with a meaning in Tantivy's regex syntax (the Rust regex crate's).
_REGEX_META = re.compile(r"([\\.+*?()|\[\]{}^$#&\-~])")


def compile_query(
    node: Node, schema: tantivy.Schema, *, now: dt.datetime | None = None
) -> tantivy.Query:
    """Build the Tantivy query for ``node``.

    ``now`` (timezone-aware) anchors relative dates such as ``sent:yesterday``; it
    defaults to the current time.
    """
    return _Compiler(schema, _utc_now(now)).compile(node)


def _utc_now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    return now


def escape_regex(text: str) -> str:
    """Escape ``text`` so Tantivy's regex query matches it literally."""
    return _REGEX_META.sub(r"\\\1", text)


class _Compiler:
    def __init__(self, schema: tantivy.Schema, now: dt.datetime) -> None:
        self.schema = schema
        self.now = now

    def compile(self, node: Node) -> tantivy.Query:
        if isinstance(node, And):
            return self._and(node)
        if isinstance(node, Or):
            return Query.boolean_query(
                [(Occur.Should, self.compile(child)) for child in node.children]
            )
        if isinstance(node, Not):
            return Query.boolean_query(
                [(Occur.Must, Query.all_query()), (Occur.MustNot, self.compile(node.child))]
            )
        if isinstance(node, Term | Phrase):
            return _any_field(
                self._text_match(field, node.text, node.property)
                for field in property_fields(node.property)
            )
        if isinstance(node, Prefix):
            return _any_field(self._prefix(field, node) for field in property_fields(node.property))
        if isinstance(node, Near):
            return _any_field(
                self._near(field, node) for field in property_fields(node.left.property)
            )
        if isinstance(node, Compare):
            return self._compare(node)
        return self._range(node)

    def _and(self, node: And) -> tantivy.Query:
        clauses: list[tuple[tantivy.Occur, tantivy.Query]] = []
        for child in node.children:
            if isinstance(child, Not):
                clauses.append((Occur.MustNot, self.compile(child.child)))
            else:
                clauses.append((Occur.Must, self.compile(child)))
        if all(occur == Occur.MustNot for occur, _ in clauses):
            # A boolean query with only MustNot clauses matches nothing in Tantivy.
            clauses.append((Occur.Must, Query.all_query()))
        return Query.boolean_query(clauses)

    # ---- text

    def _text_match(self, field: str, text: str, prop: str | None) -> tantivy.Query:
        if property_kind(prop) is FieldKind.KEYWORD:
            token = keyword_token(text)
            if token is None:
                return Query.empty_query()
            return Query.term_query(self.schema, field, token, index_option="basic")
        return self._phrase(field, text_tokens(text))

    def _phrase(self, field: str, tokens: list[PositionedToken]) -> tantivy.Query:
        if not tokens:
            # The parser rejects values without tokens; a hand-built tree matches nothing.
            return Query.empty_query()
        if len(tokens) == 1:
            return Query.term_query(self.schema, field, tokens[0][1])
        return Query.phrase_query(
            self.schema, field, [(position, text) for position, text in tokens]
        )

    def _prefix(self, field: str, node: Prefix) -> tantivy.Query:
        if property_kind(node.property) is FieldKind.KEYWORD:
            token = keyword_token(node.text)
            if token is None:
                return Query.empty_query()
            return Query.regex_query(self.schema, field, escape_regex(token) + ".*")
        tokens = text_tokens(node.text)
        if not tokens:
            return Query.empty_query()
        *head, (last_position, last) = tokens
        if not head:
            return Query.regex_query(self.schema, field, escape_regex(last) + ".*")
        # NOTE: Tantivy raises when the prefix expands to more than 16,384 terms in total
        # (RegexPhraseQuery's default max_expansions); a single-word prefix has no limit.
        words: list[str | tuple[int, str]] = [
            (position, escape_regex(text)) for position, text in head
        ]
        words.append((last_position, escape_regex(last) + ".*"))
        return Query.regex_phrase_query(self.schema, field, words)

    def _near(self, field: str, node: Near) -> tantivy.Query:
        """Build NEAR from exact phrase queries, one for each allowed gap and order.

        Tantivy's sloppy phrase query spends one slop budget on all gaps together and lets
        words swap places at a cost of 2, so it cannot express "at most n words between two
        phrases". Each exact phrase here puts the first token of one operand 1 to
        distance + 1 positions after the last token of the other.
        """
        left = text_tokens(node.left.text)
        right = text_tokens(node.right.text)
        if not left or not right:
            return Query.empty_query()
        orders = [(left, right)] if node.ordered else [(left, right), (right, left)]
        phrases = []
        for first, second in orders:
            first_end = first[-1][0]
            for gap in range(1, node.distance + 2):
                words: list[str | tuple[int, str]] = list(first)
                words.extend((first_end + gap + position, text) for position, text in second)
                phrases.append(Query.phrase_query(self.schema, field, words))
        return _any_field(phrases)

    # ---- dates, sizes and booleans

    def _compare(self, node: Compare) -> tantivy.Query:
        kind = property_kind(node.property)
        if kind is FieldKind.BOOL:
            return _any_field(
                Query.term_query(self.schema, field, node.value, index_option="basic")
                for field in property_fields(node.property)
            )
        if kind is FieldKind.DATE:
            assert not isinstance(node.value, int)
            span = values.resolve_date(node.value, self.now)
            lower, upper = values.span_interval(node.op, span.start, span.end)
            return self._interval(node.property, tantivy.FieldType.Date, lower, upper)
        assert isinstance(node.value, int) and not isinstance(node.value, bool)
        size_lower, size_upper = values.span_interval(node.op, node.value, node.value + 1)
        return self._interval(node.property, tantivy.FieldType.Unsigned, size_lower, size_upper)

    def _range(self, node: Range) -> tantivy.Query:
        if property_kind(node.property) is FieldKind.DATE:
            assert not isinstance(node.low, int) and not isinstance(node.high, int)
            low = values.resolve_date(node.low, self.now)
            high = values.resolve_date(node.high, self.now)
            return self._interval(node.property, tantivy.FieldType.Date, low.start, high.end)
        assert isinstance(node.low, int) and isinstance(node.high, int)
        return self._interval(node.property, tantivy.FieldType.Unsigned, node.low, node.high + 1)

    def _interval(
        self,
        prop: str,
        field_type: tantivy.FieldType,
        lower: int | dt.datetime | None,
        upper: int | dt.datetime | None,
    ) -> tantivy.Query:
        """Match values in [lower, upper) on the property's fields; None is an open side."""
        if isinstance(upper, int) and upper > values.MAX_SIZE:
            upper = None  # every u64 value is below 2^64
        if _is_empty(lower, upper):
            return Query.empty_query()
        if lower is None and upper is None:  # pragma: no cover - span_interval closes a side
            return Query.all_query()
        return _any_field(
            Query.range_query(
                self.schema,
                field,
                field_type,
                lower_bound=lower,
                upper_bound=upper,
                include_lower=True,
                include_upper=upper is None,
            )
            for field in property_fields(prop)
        )


def _any_field(queries: Iterable[tantivy.Query]) -> tantivy.Query:
    """Combine per-field queries with OR (a property may search several fields)."""
    clauses = list(queries)
    if len(clauses) == 1:
        return clauses[0]
    return Query.boolean_query([(Occur.Should, query) for query in clauses])


def _is_empty(lower: int | dt.datetime | None, upper: int | dt.datetime | None) -> bool:
    if isinstance(lower, int) and isinstance(upper, int):
        return lower >= upper
    if isinstance(lower, dt.datetime) and isinstance(upper, dt.datetime):
        return lower >= upper
    return False

"""Parse a KQL query (Microsoft Purview's keyword query dialect) into the tree in ``ast``.

Grammar, loosest binding first::

    query       = or-expr END
    or-expr     = and-expr *("OR" and-expr)
    and-expr    = unary *(["AND"] unary)           ; juxtaposition is an implicit AND
    unary       = ("NOT" / "-") unary / near
    near        = primary [("NEAR" / "ONEAR") ["(" n ")"] primary]
    primary     = "(" or-expr ")" / phrase / word / restriction
    restriction = name (":" / "=" / "<>" / "<" / "<=" / ">" / ">=") (value / "(" or-expr ")")

Operators are upper case, so lower-case ``and``, ``or``, ``not`` and ``near`` are words,
as in Purview. The KQL specification ([MS-KQL] 2.2.4) joins property restrictions on the
same property with OR when only spaces separate them, so ``from:alice from:bob`` finds mail
from either. Everything else that is juxtaposed is joined with AND. Comparisons (``<``,
``>=`` and so on) are kept out of the OR rule, because ``sent>=2001-01-01 sent<2001-02-01``
is meant as a range and would otherwise match every dated item.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from m365lake.search import fields
from m365lake.search.fields import FieldKind
from m365lake.search.kql import values
from m365lake.search.kql.analysis import last_token_reaches_end, property_kind, text_tokens
from m365lake.search.kql.ast import (
    And,
    Compare,
    CompareOp,
    DateSpan,
    DateValue,
    Near,
    NearOperand,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Range,
    Term,
)
from m365lake.search.kql.lexer import Kind, Token, tokenize
from m365lake.search.kql.messages import syntax_error, unknown_property_error
from m365lake.search.kql.values import InvalidValueError

# Limits that reject absurd input with a clear error instead of deep recursion or a query
# with thousands of clauses.
MAX_QUERY_CHARS = 4000
MAX_TERMS = 500
MAX_DEPTH = 50  # nested parentheses, property groups and NOT / - operators together
DEFAULT_NEAR_DISTANCE = 8  # for NEAR and ONEAR without (n)
# NEAR(n) compiles to 2 * (n + 1) exact phrase queries per field, so n is capped.
MAX_NEAR_DISTANCE = 100
# A prefix shorter than this expands to a large share of the term dictionary (every word
# starting with "e"), which is slow and floods the results. Keyword fields (importance,
# kind, file extension) hold few distinct values, so any prefix is allowed there.
MIN_PREFIX_CHARS = 3

IMPORTANCE_VALUES = {"high": "high", "normal": "normal", "medium": "normal", "low": "low"}

_OPERAND_START = {Kind.WORD, Kind.PHRASE, Kind.PROPERTY, Kind.LPAREN, Kind.NOT, Kind.MINUS}
_EXPECTED_OPERAND = "a word, a quoted phrase, a property restriction or '('"

Parsed = TypeVar("Parsed")


def parse(query: str) -> Node:
    """Parse ``query`` into a syntax tree.

    Raises KqlSyntaxError (with ``position`` and ``expected``) for a query that does not
    parse, is empty, exceeds a limit or has an invalid value, and UnknownPropertyError for
    a restriction on a property not in ``fields.PROPERTIES``.
    """
    if len(query) > MAX_QUERY_CHARS:
        raise syntax_error(
            query,
            MAX_QUERY_CHARS,
            f"at most {MAX_QUERY_CHARS} characters",
            f"the query is {len(query)} characters long",
        )
    if not query.strip():
        raise syntax_error(
            query,
            0,
            _EXPECTED_OPERAND,
            "the query is empty, and an empty query is rejected rather than matching every item",
        )
    return _Parser(query, tokenize(query)).parse_query()


class _Parser:
    def __init__(self, query: str, tokens: list[Token]) -> None:
        self.query = query
        self.tokens = tokens
        self.index = 0
        self.depth = 0
        self.terms = 0

    # ---- token helpers

    def _peek(self) -> Token:
        return self.tokens[self.index]

    def _next(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not Kind.END:
            self.index += 1
        return token

    def _nested(self, token: Token, parse_inner: Callable[[], Parsed]) -> Parsed:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise syntax_error(
                self.query,
                token.start,
                f"at most {MAX_DEPTH} levels of parentheses and NOT",
                "the query is nested too deeply",
            )
        result = parse_inner()
        self.depth -= 1
        return result

    def _count_term(self, token: Token) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise syntax_error(
                self.query,
                token.start,
                f"at most {MAX_TERMS} words, phrases and property restrictions",
                "the query has too many terms",
            )

    def _error(self, token: Token, expected: str, problem: str) -> Exception:
        return syntax_error(self.query, token.start, expected, problem)

    # ---- boolean structure

    def parse_query(self) -> Node:
        node = self._or(None)
        token = self._peek()
        if token.kind is Kind.RPAREN:
            raise self._error(
                token, "an operator, a term or the end of the query", "')' has no '('"
            )
        if token.kind is not Kind.END:  # pragma: no cover - _and consumes every operand start
            raise self._error(token, "the end of the query", f"unexpected {token.text!r}")
        return node

    def _or(self, group: str | None) -> Node:
        children = [self._and(group)]
        while self._peek().kind is Kind.OR:
            self._next()
            children.append(self._and(group))
        return _join(Or, children)

    def _and(self, group: str | None) -> Node:
        # Juxtaposed operands form a run, and an explicit AND starts a new run.
        runs: list[list[tuple[Node, str | None]]] = [[self._unary(group)]]
        while True:
            token = self._peek()
            if token.kind is Kind.AND:
                self._next()
                runs.append([self._unary(group)])
            elif token.kind in _OPERAND_START:
                runs[-1].append(self._unary(group))
            else:
                break
        children: list[Node] = []
        for run in runs:
            children.extend(_or_same_property(run))
        return _join(And, children)

    def _unary(self, group: str | None) -> tuple[Node, str | None]:
        """Return the operand and, for a property restriction, its property (else None)."""
        token = self._peek()
        if token.kind in (Kind.NOT, Kind.MINUS):
            self._next()
            operand, _ = self._nested(token, lambda: self._unary(group))
            return Not(operand), None
        return self._near(group)

    def _near(self, group: str | None) -> tuple[Node, str | None]:
        left_token = self._peek()
        left, restriction = self._primary(group)
        near = self._peek()
        if near.kind is not Kind.NEAR:
            return left, restriction

        self._next()
        if property_kind(group) is not FieldKind.TEXT:
            raise self._error(
                near,
                f"NEAR inside the parentheses of a text property, not {group}",
                f"{near.text} needs word positions, and {group} is a "
                f"{property_kind(group).value} property",
            )
        distance = DEFAULT_NEAR_DISTANCE if near.distance is None else near.distance
        if distance > MAX_NEAR_DISTANCE:
            raise self._error(
                near,
                f"a distance of at most {MAX_NEAR_DISTANCE}",
                f"{near.text}({distance}) is too far",
            )
        right_token = self._peek()
        left_operand = self._near_operand(left, left_token, near)
        right, _ = self._primary(group)
        right_operand = self._near_operand(right, right_token, near)
        if self._peek().kind is Kind.NEAR:
            raise self._error(
                self._peek(),
                "AND or OR between NEAR expressions",
                "NEAR joins exactly two words or phrases, so write (a NEAR b) AND (b NEAR c)",
            )
        return Near(left_operand, right_operand, distance, ordered=near.ordered), None

    def _near_operand(self, node: Node, token: Token, near: Token) -> NearOperand:
        if token.kind in (Kind.WORD, Kind.PHRASE) and isinstance(node, Term | Phrase):
            return node
        raise self._error(
            token,
            f"a word or a quoted phrase on each side of {near.text}",
            f"{near.text} cannot take {token.text or token.kind.value!r} as an operand. To "
            f"search one property, put the whole expression in its parentheses, e.g. "
            f"subject:(budget {near.text} report)",
        )

    def _primary(self, group: str | None) -> tuple[Node, str | None]:
        token = self._next()
        if token.kind is Kind.LPAREN:
            return self._parenthesized(token, group), None
        if token.kind in (Kind.WORD, Kind.PHRASE):
            return self._value(token, group), None
        if token.kind is Kind.PROPERTY:
            if group is not None:
                raise self._error(
                    token,
                    f"a value for {group}",
                    f"a property restriction cannot be nested inside {group}:(...)",
                )
            return self._restriction(token)
        raise self._error(token, _EXPECTED_OPERAND, _missing_operand_problem(token))

    def _parenthesized(self, open_token: Token, group: str | None) -> Node:
        def inner() -> Node:
            node = self._or(group)
            close = self._next()
            if close.kind is not Kind.RPAREN:
                raise self._error(
                    close, "')'", f"the '(' at offset {open_token.start} is not closed"
                )
            return node

        return self._nested(open_token, inner)

    # ---- property restrictions

    def _restriction(self, token: Token) -> tuple[Node, str | None]:
        name = token.text.lower()
        if name not in fields.PROPERTIES:
            raise unknown_property_error(
                self.query, token.start, token.text, sorted(fields.PROPERTIES)
            )
        kind = property_kind(name)
        op = token.op
        value_token = self._peek()
        if value_token.start != token.end or value_token.kind not in (
            Kind.WORD,
            Kind.PHRASE,
            Kind.LPAREN,
        ):
            problem = (
                f"there is a space after {token.text}{op}"
                if value_token.kind is not Kind.END and value_token.start > token.end
                else f"{token.text}{op} has no value"
            )
            raise syntax_error(
                self.query, token.end, f"a value right after {token.text}{op}", problem
            )

        if op in ("<", "<=", ">", ">=") and kind not in (FieldKind.DATE, FieldKind.SIZE):
            raise syntax_error(
                self.query,
                token.start + len(token.text),
                "':' or '='",
                f"{op} applies only to date and size properties, and {name} is a "
                f"{kind.value} property",
            )

        if value_token.kind is Kind.LPAREN:
            if op not in (":", "=", "<>"):
                raise self._error(
                    value_token, "a single value", f"{op} takes one value, not a group"
                )
            self._next()
            node = self._parenthesized(value_token, name)
        else:
            node = self._value(self._next(), name, "=" if op == "<>" else op)

        if op == "<>":
            return Not(node), None
        return node, name if op in (":", "=") else None

    def _value(self, token: Token, prop: str | None, op: str = "=") -> Node:
        """Parse a word or phrase ``token`` (already consumed) as a value of ``prop``.

        ``prop`` is None for free text. ``op`` is the restriction's operator, which only
        dates and sizes use.
        """
        kind = property_kind(prop)
        if kind in (FieldKind.DATE, FieldKind.SIZE):
            assert prop is not None
            return self._scalar(prop, kind, op, token)

        self._count_term(token)
        if kind is FieldKind.BOOL:
            assert prop is not None
            flag = self._convert(prop, token.text, token.start, values.parse_bool)
            return Compare(prop, "=", flag)
        if token.kind is Kind.WORD and "*" in token.text:
            return self._prefix(token, prop, kind)
        if kind is FieldKind.KEYWORD:
            assert prop is not None
            return Term(self._keyword(prop, token.text, token.start), prop)

        self._check_text(token.text, token.start)
        if token.kind is Kind.PHRASE:
            return Phrase(token.text, prop)
        return Term(token.text, prop)

    def _prefix(self, token: Token, prop: str | None, kind: FieldKind) -> Prefix:
        text = token.text
        star = text.index("*")
        stem = text[:-1]
        if star != len(text) - 1 or not stem:
            raise syntax_error(
                self.query,
                token.start + star,
                "a word ending in * (a prefix match)",
                "only a trailing * (a prefix match) is supported, not a leading or inner one",
            )
        if kind is FieldKind.KEYWORD:
            assert prop is not None
            return Prefix(self._keyword(prop, stem, token.start, prefix=True), prop)

        tokens = text_tokens(stem)
        if not last_token_reaches_end(stem):
            problem = (
                f"the word before * in {text!r} is {fields.MAX_TOKEN_BYTES} bytes or longer, "
                "and the index does not store such words"
                if stem[-1].isalnum()
                else f"the * in {text!r} follows {stem[-1]!r}, not a letter or digit"
            )
            raise syntax_error(
                self.query, token.start + star, "a letter or digit right before *", problem
            )
        if len(tokens[-1][1]) < MIN_PREFIX_CHARS:
            raise syntax_error(
                self.query,
                token.start,
                f"at least {MIN_PREFIX_CHARS} letters or digits before *",
                f"the prefix {tokens[-1][1]!r} is too short to search efficiently",
            )
        return Prefix(stem, prop)

    def _keyword(self, prop: str, text: str, position: int, *, prefix: bool = False) -> str:
        value = text.strip()
        if prop in ("filetype", "fileextension"):
            value = value.removeprefix(".")
        if not value:
            raise syntax_error(self.query, position, f"a value for {prop}", "the value is empty")
        if prop == "importance" and not prefix:
            normalized = IMPORTANCE_VALUES.get(value.lower())
            if normalized is None:
                raise syntax_error(
                    self.query,
                    position,
                    "high, normal (or medium) or low",
                    f"invalid value for importance: {text!r}",
                )
            return normalized
        if prop == "kind":
            self._check_kind(value, text, position, prefix=prefix)
        return value

    def _check_kind(self, value: str, text: str, position: int, *, prefix: bool) -> None:
        """Reject a kind no archived item has, because it could only ever match nothing."""
        lowered = value.lower()
        known = fields.KIND_VALUES
        if any(kind.startswith(lowered) if prefix else kind == lowered for kind in known):
            return
        accepted = " or ".join(known)
        raise syntax_error(
            self.query,
            position,
            accepted,
            f"invalid value for kind: {text!r}; the archive contains only email (mail), "
            "docs (OneDrive and SharePoint files), meetings (calendar events), contacts "
            "and microsoftteams (Teams channel messages)",
        )

    def _check_text(self, text: str, position: int) -> None:
        """Reject a text value without a token the index could store, as it could never match."""
        if text_tokens(text):
            return
        if any(char.isalnum() for char in text):
            problem = (
                f"{text!r} has only words of {fields.MAX_TOKEN_BYTES} bytes or longer, which "
                "the index does not store, so it can never match"
            )
        else:
            problem = (
                f"{text!r} has no letters or digits, and the index stores only words, so it "
                "can never match"
            )
        raise syntax_error(self.query, position, "a word with letters or digits", problem)

    # ---- dates and sizes

    def _scalar(self, prop: str, kind: FieldKind, op: str, first: Token) -> Node:
        """Parse a date or size value or ``low..high`` range; ``first`` is already consumed."""
        self._count_term(first)
        parse_value: Callable[[str], DateValue | int] = (
            values.parse_date if kind is FieldKind.DATE else values.parse_size
        )
        pieces = self._range_pieces(first)
        if len(pieces) == 1:
            text, position = pieces[0]
            return Compare(prop, _compare_op(op), self._convert(prop, text, position, parse_value))

        if op not in (":", "="):
            raise syntax_error(
                self.query, first.start, f"{prop}:low..high", f"a range takes ':', not {op}"
            )
        (low_text, low_position), (high_text, high_position) = pieces
        low = self._convert(prop, low_text, low_position, parse_value)
        high = self._convert(prop, high_text, high_position, parse_value)
        if _range_is_empty(low, high):
            raise syntax_error(
                self.query,
                first.start,
                "a range whose start is not after its end",
                f"the range {low_text}..{high_text} for {prop} is empty",
            )
        return Range(prop, low, high)

    def _range_pieces(self, first: Token) -> list[tuple[str, int]]:
        """Return the one or two values of a scalar restriction, with their offsets.

        A range may use quoted ends (``received:"last month".."this month"``), so adjacent
        tokens joined by ``..`` are read as one value.
        """
        sequence = [first]
        while True:
            following = self._peek()
            last = sequence[-1]
            adjacent = following.start == last.end and following.kind in (Kind.WORD, Kind.PHRASE)
            joined = (last.kind is Kind.WORD and last.text.endswith("..")) or (
                following.kind is Kind.WORD and following.text.startswith("..")
            )
            if not (adjacent and joined):
                break
            sequence.append(self._next())

        pieces: list[tuple[str, int] | None] = []  # None marks a ".." separator
        for token in sequence:
            if token.kind is Kind.PHRASE:
                pieces.append((token.text, token.start + 1))
                continue
            offset = token.start
            for index, part in enumerate(token.text.split("..")):
                if index:
                    pieces.append(None)
                    offset += 2
                if part:
                    pieces.append((part, offset))
                offset += len(part)

        if len(pieces) == 1 and pieces[0] is not None:
            return [pieces[0]]
        if len(pieces) == 3 and pieces[0] is not None and pieces[1] is None and pieces[2]:
            return [pieces[0], pieces[2]]
        raise syntax_error(
            self.query,
            first.start,
            "one value or a range low..high, e.g. 2001-01-01..2001-01-31 or 1MB..5MB",
            "the value is not a single value or a two-ended range",
        )

    def _convert(
        self, prop: str, text: str, position: int, convert: Callable[[str], Parsed]
    ) -> Parsed:
        try:
            return convert(text)
        except InvalidValueError as error:
            raise syntax_error(
                self.query, position, error.expected, f"invalid value for {prop}: {error}"
            ) from None


def _compare_op(op: str) -> CompareOp:
    if op in (":", "="):
        return "="
    if op == "<":
        return "<"
    if op == "<=":
        return "<="
    if op == ">":
        return ">"
    return ">="


def _range_is_empty(low: DateValue | int, high: DateValue | int) -> bool:
    if isinstance(low, int) and isinstance(high, int):
        return low > high
    if isinstance(low, DateSpan) and isinstance(high, DateSpan):
        return low.start >= high.end
    return False  # a relative end is known only when the query runs


def _missing_operand_problem(token: Token) -> str:
    if token.kind is Kind.END:
        return "the query ends where a term is needed"
    if token.kind is Kind.RPAREN:
        return "')' closes a group that has no term before it"
    if token.kind in (Kind.AND, Kind.OR):
        return f"{token.text} needs a term on each side"
    if token.kind is Kind.NEAR:
        return f"{token.text} needs a word or phrase on each side"
    return f"unexpected {token.text!r}"  # pragma: no cover - every other kind starts an operand


def _or_same_property(run: list[tuple[Node, str | None]]) -> list[Node]:
    """Join juxtaposed restrictions on the same property with OR, keeping first positions."""
    result: list[list[Node]] = []
    by_property: dict[str, list[Node]] = {}
    for node, prop in run:
        if prop is None:
            result.append([node])
        elif prop in by_property:
            by_property[prop].append(node)
        else:
            by_property[prop] = [node]
            result.append(by_property[prop])
    return [_join(Or, nodes) for nodes in result]


def _join(combine: type[And] | type[Or], nodes: list[Node]) -> Node:
    """Combine ``nodes`` with And or Or, flattening nested nodes of the same type."""
    if len(nodes) == 1:
        return nodes[0]
    children: list[Node] = []
    for node in nodes:
        if isinstance(node, combine):
            children.extend(node.children)
        else:
            children.append(node)
    return combine(tuple(children))

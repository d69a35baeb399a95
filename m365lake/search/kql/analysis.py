"""Tokenize query values exactly as the index tokenizes field values.

The text analyzer drops tokens of ``fields.MAX_TOKEN_BYTES`` bytes or more but keeps the
positions of the tokens after them, so a query value keeps that gap too: the phrase
``"key <40-byte token> value"`` matches the same text in a document.
"""

from __future__ import annotations

from collections.abc import Sequence

from m365lake.search import fields
from m365lake.search.fields import FieldKind

_TEXT = fields.text_analyzer()

# (position relative to the first token, token text)
PositionedToken = tuple[int, str]


def property_fields(prop: str | None) -> tuple[str, ...]:
    """Return the index fields a property searches; None is free text."""
    if prop is None:
        return fields.FREE_TEXT_FIELDS
    return fields.PROPERTIES[prop]


def property_kind(prop: str | None) -> FieldKind:
    """Return the field kind of a property (every property maps to fields of one kind)."""
    kinds = {fields.FIELDS_BY_NAME[name].kind for name in property_fields(prop)}
    if len(kinds) != 1:  # pragma: no cover - guards edits to fields.PROPERTIES
        raise ValueError(f"property {prop!r} maps to fields of different kinds: {kinds}")
    return kinds.pop()


def text_tokens(text: str) -> list[PositionedToken]:
    """Return the tokens of ``text`` in a full-text field with positions starting at 0."""
    tokens = _TEXT.pre_tokenize(text).tokens
    if not tokens:
        return []
    first = tokens[0].position
    return [(token.position - first, token.text) for token in tokens]


def last_token_reaches_end(text: str) -> bool:
    """Return True when the last token of ``text`` ends at its last character."""
    tokens = _TEXT.pre_tokenize(text).tokens
    return bool(tokens) and tokens[-1].char_offset_to == len(text)


def keyword_token(text: str) -> str | None:
    """Return the single token a keyword field stores for ``text`` (None for an empty value)."""
    tokens = fields.analyze_keyword(text)
    return tokens[0] if tokens else None


def value_positions(values: Sequence[str]) -> dict[str, list[int]]:
    """Return token -> sorted positions for the values of one multi-valued text field.

    The numbering is Tantivy 0.27's, checked against the index in test_kql_oracle.py. A
    value starts two positions after the last kept token of the previous value, so a value
    boundary counts as one word. A value without kept tokens still adds one position.
    """
    positions: dict[str, list[int]] = {}
    next_start = 0
    for value in values:
        tokens = _TEXT.pre_tokenize(value).tokens
        for token in tokens:
            positions.setdefault(token.text, []).append(next_start + token.position)
        if tokens:
            next_start += tokens[-1].position + 1
        next_start += 1
    return positions

"""Split a KQL query into tokens, each with its character offset in the query."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from m365lake.search.kql.messages import syntax_error

# Straight quotes and the curly quotes that word processors substitute for them.
QUOTES = '"\u201c\u201d'
_WORD_END = set("()" + QUOTES)

# A property restriction starts a word: a name, then an operator with no space around it.
_PROPERTY = re.compile(r"([A-Za-z][A-Za-z0-9_]*)(<>|<=|>=|:|=|<|>)")
_NEAR_DISTANCE = re.compile(r"\(\s*(?:n\s*=\s*)?(\d+)\s*\)", re.IGNORECASE)


class Kind(Enum):
    WORD = "word"
    PHRASE = "phrase"
    PROPERTY = "property"  # "name:" or "name>=": text is the name, op the operator
    LPAREN = "("
    RPAREN = ")"
    AND = "AND"
    OR = "OR"
    NOT = "NOT"
    MINUS = "-"
    NEAR = "NEAR"  # also ONEAR: distance and ordered set
    END = "end of query"


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str
    start: int  # offset of the first character
    end: int  # offset after the last character
    op: str = ""
    distance: int | None = None
    ordered: bool = False


def tokenize(query: str) -> list[Token]:
    """Return the tokens of ``query``, ending with an END token; raise KqlSyntaxError."""
    tokens: list[Token] = []
    index = 0
    length = len(query)
    while index < length:
        char = query[index]
        if char.isspace():
            index += 1
        elif char == "(":
            tokens.append(Token(Kind.LPAREN, char, index, index + 1))
            index += 1
        elif char == ")":
            tokens.append(Token(Kind.RPAREN, char, index, index + 1))
            index += 1
        elif char in QUOTES:
            index = _read_phrase(query, index, tokens)
        elif char == "-" and index + 1 < length and _starts_operand(query[index + 1]):
            tokens.append(Token(Kind.MINUS, char, index, index + 1))
            index += 1
        else:
            index = _read_word(query, index, tokens)
    tokens.append(Token(Kind.END, "", length, length))
    return tokens


def _starts_operand(char: str) -> bool:
    return not char.isspace() and char != ")"


def _read_phrase(query: str, start: int, tokens: list[Token]) -> int:
    close = _find_quote(query, start + 1)
    if close < 0:
        raise syntax_error(query, start, "a closing quote", "the phrase has no closing quote")
    tokens.append(Token(Kind.PHRASE, query[start + 1 : close], start, close + 1))
    return close + 1


def _find_quote(query: str, start: int) -> int:
    for index in range(start, len(query)):
        if query[index] in QUOTES:
            return index
    return -1


def _read_word(query: str, start: int, tokens: list[Token]) -> int:
    end = start
    while end < len(query) and not query[end].isspace() and query[end] not in _WORD_END:
        end += 1
    word = query[start:end]

    if word in ("AND", "OR", "NOT"):
        tokens.append(Token(Kind[word], word, start, end))
        return end
    if word in ("NEAR", "ONEAR"):
        return _read_near(query, word, start, end, tokens)

    match = _PROPERTY.match(word)
    if match is None:
        tokens.append(Token(Kind.WORD, word, start, end))
        return end
    name, op = match.groups()
    op_end = start + match.end()
    tokens.append(Token(Kind.PROPERTY, name, start, op_end, op=op))
    if op_end < end:
        tokens.append(Token(Kind.WORD, query[op_end:end], op_end, end))
    return end


def _read_near(query: str, word: str, start: int, end: int, tokens: list[Token]) -> int:
    distance = None
    if end < len(query) and query[end] == "(":
        match = _NEAR_DISTANCE.match(query, end)
        if match is None:
            raise syntax_error(
                query, end, "a distance such as NEAR(5)", f"{word}( must be followed by a number"
            )
        distance = int(match.group(1))
        end = match.end()
    tokens.append(Token(Kind.NEAR, word, start, end, distance=distance, ordered=word == "ONEAR"))
    return end

"""Build KQL errors whose message points at the failing offset with a caret."""

from __future__ import annotations

from collections.abc import Sequence

from m365lake.errors import KqlSyntaxError, UnknownPropertyError

# Characters of context shown on each side of the error offset in a long query.
_CONTEXT = 60


def show_position(query: str, position: int) -> str:
    """Return two indented lines: the query (or the part around ``position``) and a caret."""
    start = max(0, position - _CONTEXT)
    end = min(len(query), position + _CONTEXT)
    prefix = "..." if start > 0 else ""
    suffix = "..." if end < len(query) else ""
    # Tabs and newlines would shift the caret, so each shows as one space.
    excerpt = "".join(" " if char.isspace() else char for char in query[start:end])
    caret = " " * (len(prefix) + position - start) + "^"
    return f"    {prefix}{excerpt}{suffix}\n    {caret}"


def syntax_error(query: str, position: int, expected: str, problem: str) -> KqlSyntaxError:
    """Build a KqlSyntaxError: what is wrong, at which offset, and what would be accepted."""
    message = (
        f"invalid KQL query at offset {position}: {problem}; expected {expected}\n"
        f"{show_position(query, position)}"
    )
    return KqlSyntaxError(message, query=query, position=position, expected=expected)


def unknown_property_error(
    query: str, position: int, name: str, known: Sequence[str]
) -> UnknownPropertyError:
    message = (
        f"unknown property {name!r} at offset {position}; known properties: "
        f"{', '.join(known)}. To search for the text itself, put it in quotes, "
        f'e.g. "{name}:..."\n{show_position(query, position)}'
    )
    return UnknownPropertyError(message, query=query, position=position, name=name, known=known)

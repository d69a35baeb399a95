"""Paging state for Graph collections and delta rounds.

Graph pages carry ``@odata.nextLink`` while more pages follow and, at the end of a delta
round, ``@odata.deltaLink``. Both are absolute and opaque: the client requests them
verbatim and never rebuilds them, because they embed ``$skiptoken``/``$deltatoken`` and
the original query options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from m365lake.errors import GraphRequestError
from m365lake.graph.redact import redact_url

NEXT_LINK = "@odata.nextLink"
DELTA_LINK = "@odata.deltaLink"


@dataclass(frozen=True)
class DeltaPage:
    """One page of a delta round.

    ``delta_link`` is set on the last page only; store it to start the next round.
    ``next_link`` is the link of the following page, for callers that checkpoint mid-round.
    """

    items: list[dict[str, Any]]
    delta_link: str | None = None
    next_link: str | None = None


@dataclass
class PageCursor:
    """Position in an enumeration: the link to request next, and the deltaLink once seen."""

    url: str
    """The request to send next: the first URL, then each nextLink verbatim."""
    next_link: str | None = None
    delta_link: str | None = None
    pages: int = 0
    items: int = 0
    first_request: bool = field(default=True, repr=False)

    @property
    def done(self) -> bool:
        return self.pages > 0 and self.next_link is None

    def update(self, page: dict[str, Any]) -> list[dict[str, Any]]:
        """Record one response page, point ``url`` at its nextLink and return its items.

        A page may be empty and still carry a nextLink, so emptiness never ends the walk.
        """
        items = page.get("value")
        if not isinstance(items, list):
            raise GraphRequestError(
                f"GET {redact_url(self.url)} returned a page without a 'value' array; "
                "only collection and delta endpoints can be paged",
                method="GET",
                url=redact_url(self.url),
            )
        next_link = _link(page, NEXT_LINK)
        if next_link is not None and next_link == self.url:
            raise GraphRequestError(
                f"GET {redact_url(self.url)} returned itself as @odata.nextLink; stopping "
                "instead of requesting the same page forever",
                method="GET",
                url=redact_url(self.url),
            )

        self.pages += 1
        self.items += len(items)
        self.next_link = next_link
        # Graph sends one link or the other. Should both appear, the nextLink wins.
        self.delta_link = _link(page, DELTA_LINK) if next_link is None else None
        if next_link is not None:
            self.url = next_link
            self.first_request = False
        return items


def _link(page: dict[str, Any], key: str) -> str | None:
    value = page.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise GraphRequestError(f"Graph returned a {key} that is not a URL: {type(value).__name__}")
    return value

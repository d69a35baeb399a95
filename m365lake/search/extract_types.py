"""The results of text extraction, shared by every format module and the worker pool.

``m365lake.search.extract`` re-exports these names; import them from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ExtractionStatus = Literal[
    "ok", "empty", "unsupported", "encrypted", "corrupt", "too_large", "timeout"
]

COMPLETE_STATUSES: tuple[ExtractionStatus, ...] = ("ok", "empty")

# Text beyond this many characters is cut off, and the item is reported as partially
# indexed (status "too_large" with the text kept). One million characters is roughly 300
# pages of prose at 3,000 characters a page (an estimate), enough for nearly every
# document while one item cannot bloat the index.
DEFAULT_MAX_CHARS = 1_000_000

# Inputs larger than this are not parsed at all (status "too_large"), because every parser
# here holds the whole input in memory, and its parsed form takes more.
MAX_INPUT_BYTES = 100 * 1024 * 1024

# Containers (archives, attached messages, embedded objects) are opened this many levels
# deep, which also stops self-containing archives such as zip quines.
MAX_NESTING_DEPTH = 5


@dataclass(frozen=True)
class Extraction:
    """The text of one item, or the reason it has none."""

    text: str
    """The extracted text, or "" when nothing could be extracted."""
    status: ExtractionStatus
    """"ok" and "empty" (a file with no text, e.g. a blank document) are complete."""
    reason: str | None = None
    """Plain words for the partially-indexed report, or None when complete."""
    title: str | None = None
    """Document metadata title, when the format has one."""
    author: str | None = None
    """Document metadata author, when the format has one."""

    @property
    def complete(self) -> bool:
        """Whether all of the item's text was extracted."""
        return self.status in COMPLETE_STATUSES


@dataclass(frozen=True)
class AttachmentText:
    """One attachment of a message and its extracted text."""

    name: str | None
    content_type: str | None
    size: int
    """Decoded size in bytes."""
    extraction: Extraction
    """For an attached message: the embedded message's headers, body and attachments as text."""


@dataclass(frozen=True)
class MessageText:
    """The body text and attachments of one message."""

    body: str
    """Plain text of the body, with an HTML-only body converted to text."""
    body_extraction: Extraction
    """Status of the body itself."""
    attachments: list[AttachmentText]


class ExtractionFailed(Exception):
    """Raised inside the format modules to end an extraction with a status and reason.

    ``extract_text`` and ``extract_message`` turn it into an ``Extraction``, so callers
    never see it.
    """

    def __init__(self, status: ExtractionStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def finish(
    text: str,
    *,
    max_chars: int,
    title: str | None = None,
    author: str | None = None,
) -> Extraction:
    """Build the result for extracted ``text``: "empty" when blank, "too_large" when cut off."""
    text = text.replace("\x00", "")
    title = _clean_metadata(title)
    author = _clean_metadata(author)
    if len(text) > max_chars:
        return Extraction(
            text=text[:max_chars],
            status="too_large",
            reason=f"text cut off at {max_chars:,} of {len(text):,} characters",
            title=title,
            author=author,
        )
    if not text.strip():
        return Extraction(text="", status="empty", title=title, author=author)
    return Extraction(text=text, status="ok", title=title, author=author)


def failure(status: ExtractionStatus, reason: str) -> Extraction:
    """Build the result for an item whose text could not be extracted."""
    return Extraction(text="", status=status, reason=reason)


def _clean_metadata(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.replace("\x00", "").strip()
    return value or None

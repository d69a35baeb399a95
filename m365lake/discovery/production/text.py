"""Extracted text of produced documents, written as UTF-8 text files.

A message's text is a header block (From, To, Cc, Bcc, Sent, Subject, Attachments)
followed by its body. An attachment's or a file's text is what extraction returns. Every
document gets a text file, empty when nothing could be extracted, and TEXTSTATUS in the
load file gives the reason. Text files are UTF-8 with a byte order mark and CR LF line ends, as
Windows review platforms expect, and carry no control characters (``printable`` says
which are replaced, and by what).

Extraction runs in the search package's worker processes (``ExtractionPool``), which stop
a parser that hangs or crashes on one item without stopping the export.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from m365lake.discovery.production.folder import FileRecord, ProductionFolder
from m365lake.discovery.production.printable import printable_text
from m365lake.search.extract_types import MAX_INPUT_BYTES, Extraction, MessageText

if TYPE_CHECKING:
    from m365lake.search.extract_types import AttachmentText

TEXT_ENCODING = "utf-8-sig"
_LINE_BREAK = re.compile("\r\n|\r|\n")


class TextExtractor(Protocol):
    """Text extraction as ``ExtractionPool`` offers it."""

    def extract_text(
        self,
        data: bytes,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        max_chars: int = ...,
    ) -> Extraction: ...

    def extract_message(self, mime: bytes, *, max_chars: int = ...) -> MessageText: ...


@dataclass(frozen=True)
class TextPart:
    """One document whose text a job extracts."""

    text_path: str
    content: bytes | None
    """The content to extract; None when it is not available (see ``missing``)."""
    filename: str | None
    content_type: str | None
    size: int
    header: str = ""
    """Text written before the extracted text (a message's header block)."""
    is_message: bool = False
    missing: Extraction | None = None
    """The result to report when ``content`` is None, e.g. status ``too_large``."""


@dataclass(frozen=True)
class TextResult:
    file: FileRecord
    status: str
    complete: bool


def text_status(extraction: Extraction) -> str:
    """Return TEXTSTATUS: ``ok``, ``empty``, or the status and reason of a failure."""
    if extraction.complete:
        return extraction.status
    return f"{extraction.status}: {extraction.reason}" if extraction.reason else extraction.status


def _matched(attachments: Sequence[AttachmentText], part: TextPart) -> Extraction | None:
    """Return the parent's extraction of ``part`` when exactly one attachment matches it.

    The search extractor walks MIME on its own, so an attachment is matched by content
    type and decoded size. Attachments that share both are extracted again, one by one.
    """
    candidates = [
        item
        for item in attachments
        if item.content_type == part.content_type and item.size == part.size
    ]
    return candidates[0].extraction if len(candidates) == 1 else None


def extract_family(
    folder: ProductionFolder,
    extractor: TextExtractor,
    parts: Sequence[TextPart],
    *,
    max_chars: int,
) -> list[TextResult]:
    """Extract and write the text of a family's documents, parent first; return the results.

    For a message family the parent's extraction supplies its attachments' text where
    they can be matched, so most attachments are extracted once.
    """
    results: list[TextResult] = []
    parent_attachments: Sequence[AttachmentText] = ()
    for index, part in enumerate(parts):
        if part.content is None:
            extraction = part.missing or Extraction(text="", status="empty")
        elif part.is_message and index == 0:
            message = extractor.extract_message(part.content, max_chars=max_chars)
            parent_attachments = message.attachments
            extraction = message.body_extraction
        else:
            extraction = _matched(parent_attachments, part) or _extract(
                extractor, part, part.content, max_chars
            )
        text = _LINE_BREAK.sub("\r\n", printable_text(part.header + extraction.text))
        record = folder.write_bytes(part.text_path, text.encode(TEXT_ENCODING))
        results.append(TextResult(record, text_status(extraction), extraction.complete))
    return results


def _extract(
    extractor: TextExtractor, part: TextPart, content: bytes, max_chars: int
) -> Extraction:
    if part.is_message:
        return extractor.extract_message(content, max_chars=max_chars).body_extraction
    return extractor.extract_text(
        content, filename=part.filename, content_type=part.content_type, max_chars=max_chars
    )


def missing_content(size: int | None, *, archived: bool, package_type: str | None) -> Extraction:
    """Return the TEXTSTATUS result for a document whose content is not extracted."""
    if not archived:
        reason = (
            f"the content of this {package_type} package is not downloadable"
            if package_type
            else "the content was not archived (see the lake's failures table)"
        )
        return Extraction(text="", status="unsupported", reason=reason)
    return Extraction(
        text="",
        status="too_large",
        reason=(
            f"the content is {size or 0:,} bytes; text is extracted from items up to "
            f"{MAX_INPUT_BYTES:,} bytes"
        ),
    )

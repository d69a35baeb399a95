"""The settings of one export, checked before anything is written."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from m365lake.discovery.errors import InvalidRequestError
from m365lake.discovery.production.dedup import DEDUP_SCOPES, DedupScope
from m365lake.discovery.production.names import check_prefix

DEFAULT_MAX_TEXT_CHARS = 10_000_000
"""Characters of text kept per document, about 3,000 pages at 3,000 characters a page.

Ten times the search index's limit, because a production's text should be complete;
longer text is cut and reported with TEXTSTATUS ``too_large``.
"""

NativeNames = Literal["control", "original"]
NATIVE_NAMES: tuple[NativeNames, ...] = ("control", "original")
ExportMode = Literal["new", "resume", "overwrite"]
EXPORT_MODES: tuple[ExportMode, ...] = ("new", "resume", "overwrite")


@dataclass(frozen=True)
class ExportOptions:
    """Numbering, deduplication and layout settings of a production."""

    prefix: str = "PROD"
    """Control number prefix, e.g. ``ABC`` for ABC0000001."""
    start: int = 1
    """First control number, so a later production can continue an earlier one."""
    digits: int = 7
    """Zero padding of the number part of a control number."""
    dedup: DedupScope = "global"
    """``global``: one copy across custodians; ``custodian``: one per custodian; ``none``."""
    native_names: NativeNames = "control"
    """``control``: ABC0000001.pdf; ``original``: ABC0000001_<safe original name>.pdf."""
    folder_size: int = 1_000
    """Documents per numbered folder under NATIVES/ and TEXT/."""
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    """Characters of extracted text kept per document."""

    def check(self) -> ExportOptions:
        """Return the options unchanged, or raise InvalidRequestError naming the bad one."""
        check_prefix(self.prefix)
        if not 1 <= self.digits <= 15:
            raise InvalidRequestError(f"digits must be 1 to 15, got {self.digits}")
        if self.start < 0:
            raise InvalidRequestError(f"the start number must be 0 or more, got {self.start}")
        if self.dedup not in DEDUP_SCOPES:
            raise InvalidRequestError(
                f"invalid dedup scope {self.dedup!r}: use one of {', '.join(DEDUP_SCOPES)}"
            )
        if self.native_names not in NATIVE_NAMES:
            raise InvalidRequestError(
                f"invalid native naming {self.native_names!r}: use one of {', '.join(NATIVE_NAMES)}"
            )
        if not 1 <= self.folder_size <= 100_000:
            raise InvalidRequestError(
                f"documents per folder must be 1 to 100,000, got {self.folder_size}"
            )
        if self.max_text_chars < 1:
            raise InvalidRequestError(
                f"the text limit must be 1 character or more, got {self.max_text_chars}"
            )
        return self

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

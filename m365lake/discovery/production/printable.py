"""Text a production writes, with the control characters readers reject replaced.

Archived values can hold any character: a subject with a NUL, a note pasted with an
escape sequence, Word text with page breaks. Concordance DAT cannot carry them, and
vCard (RFC 6350) and iCalendar (RFC 5545) forbid them, so every file of a production
writes its text through ``printable_text``. The DAT, the CSV, the TEXT files and the
cards then contain the same text:

- TAB, LF and CR are kept.
- VT (U+000B) and FF (U+000C), the line and page breaks of Word text, become LF.
- The other C0 controls (U+0000 to U+001F) and DEL (U+007F) become a space, so words
  on either side stay apart and the length of the text does not shrink.
- Lone surrogates become U+FFFD, so the text encodes as UTF-8.
"""

from __future__ import annotations

import re

from m365lake.search.documents import valid_text

_PAGE_BREAKS = re.compile("[\x0b\x0c]")
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1f\x7f]")


def printable_text(value: str) -> str:
    """Return ``value`` with the control characters replaced as the module describes."""
    return _CONTROLS.sub(" ", _PAGE_BREAKS.sub("\n", valid_text(value)))

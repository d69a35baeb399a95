"""Recognise mail files on disk and split mbox files into messages, byte-exact.

An mbox message is the bytes between its ``From `` separator line and the next one. A
separator counts only at the start of the file or after a blank line, and only when the
line after it is a header, or is blank and the separator carries an asctime-style time.
Writers that never quote ``From `` in bodies (mboxcl, old Thunderbird) then still split
correctly in the common case.

``>From `` lines are kept as stored. A file does not say whether it is mboxo (quotes
only ``From ``) or mboxrd (also quotes ``>From ``), so un-quoting would guess, and the
archive keeps the bytes the file holds. As in Python's ``mailbox`` module, the one line
ending that writers add before the next separator is not part of the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

MBOX_SUFFIXES = frozenset({".mbox", ".mbx"})

# Files that sit next to mail in corpus folders and are never mail themselves.
DOCUMENT_SUFFIXES = frozenset({".md", ".csv", ".json", ".py", ".sh", ".html", ".pdf", ".zip"})

_SEPARATOR = re.compile(rb"(?:\A|(?<=\n\n)|(?<=\r\n\r\n))From [^\n]*\n")
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
_ENVELOPE_TIME = re.compile(rb" \d{1,2}:\d\d(?::\d\d)? ")

# Magic numbers of mail containers that are not RFC 822 text, so none can be served as a
# message's MIME. An Outlook .msg is an OLE compound file, TNEF is Outlook's own
# attachment encoding (winmail.dat), and a bare PKCS #7 blob is DER.
_CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_TNEF_MAGIC = b"\x78\x9f\x3e\x22"
_NON_MIME_SUFFIXES = {
    ".msg": "Outlook .msg",
    ".oft": "Outlook .msg",
    ".tnef": "TNEF",
    ".p7m": "PKCS #7",
    ".p7s": "PKCS #7",
    ".p7c": "PKCS #7",
    ".p7z": "PKCS #7",
    ".p7": "PKCS #7",
    ".pst": "Outlook .pst",
    ".ost": "Outlook .pst",
}


def non_mime_kind(path: Path, head: bytes) -> str | None:
    """Name the container format of a file that is not RFC 822 mail, or return None."""
    if head.startswith(_CFB_MAGIC):
        return "Outlook .msg"
    if head.startswith(_TNEF_MAGIC):
        return "TNEF"
    kind = _NON_MIME_SUFFIXES.get(path.suffix.lower())
    if kind is not None:
        return kind
    # DER SEQUENCE with a long or indefinite length: what bare PKCS #7 files start with.
    if len(head) > 1 and head[0] == 0x30 and head[1] >= 0x80:
        return "PKCS #7"
    return None


def looks_like_message(head: bytes) -> bool:
    """Return True when the first non-blank line is a header field or an mbox ``From `` line."""
    for line in head.splitlines():
        if not line.strip():
            continue
        return line.startswith(b"From ") or _HEADER_LINE.match(line) is not None
    return False


def is_mbox(path: Path, data: bytes) -> bool:
    """Return True for a file to split as an mbox.

    Files named ``*.mbox`` or ``*.mbx`` always are. A file without a suffix is one when it
    starts with a ``From `` line and contains at least two messages, because a single
    ``.eml`` export often keeps its envelope ``From `` line and must stay byte-exact.
    """
    if path.suffix.lower() in MBOX_SUFFIXES:
        return True
    if path.suffix or not data.startswith(b"From "):
        return False
    return sum(1 for _ in _separators(data)) >= 2


def _separators(data: bytes) -> Iterator[re.Match[bytes]]:
    for match in _SEPARATOR.finditer(data):
        next_line_start = match.end()
        next_line_end = data.find(b"\n", next_line_start)
        next_line = data[next_line_start : next_line_end if next_line_end >= 0 else len(data)]
        if _HEADER_LINE.match(next_line):
            yield match
        elif not next_line.strip(b"\r") and _ENVELOPE_TIME.search(match.group(0)):
            # A message without headers splits here only after a real envelope line (one
            # with a time). A body that starts with "From " then stays in its message.
            yield match


def split_mbox(data: bytes) -> list[bytes]:
    """Split mbox bytes into messages without their ``From `` lines.

    Bytes before the first separator are dropped when blank. A file with no separator at
    all is returned whole as one message, because it is then a plain RFC 822 file.
    """
    separators = list(_separators(data))
    if not separators:
        return [data] if data.strip() else []

    messages = []
    if data[: separators[0].start()].strip():
        messages.append(_without_trailing_blank_line(data[: separators[0].start()]))
    for index, separator in enumerate(separators):
        end = separators[index + 1].start() if index + 1 < len(separators) else len(data)
        messages.append(_without_trailing_blank_line(data[separator.end() : end]))
    return messages


def _without_trailing_blank_line(message: bytes) -> bytes:
    if message.endswith(b"\r\n\r\n"):
        return message[:-2]
    if message.endswith(b"\n\n"):
        return message[:-1]
    return message

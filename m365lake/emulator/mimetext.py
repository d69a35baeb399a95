"""Lenient text decoding for MIME headers and bodies.

Real mail carries unknown charsets, 8-bit bytes in headers, broken encoded-words and
NUL bytes. Every function here returns a string for any input and catches the codec errors it can
meet, so the callers in ``mapping.py`` need no error handling of their own.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re

# Labels that real mail misuses. Text marked us-ascii or iso-8859-1 often carries
# Windows-1252 bytes (curly quotes, the euro sign), and Windows-1252 agrees with Latin-1
# on every byte from 0xA0 up, so it decodes both correctly.
_CHARSET_ALIASES = {
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "unknown-8bit": "utf-8",
    "x-unknown": "utf-8",
    "unknown": "utf-8",
    "utf8": "utf-8",
    "ks_c_5601-1987": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
}

# RFC 2047 encoded-word. The charset may carry an RFC 2231 language suffix ("utf-8*en").
_ENCODED_WORD = re.compile(rb"=\?([^?\s]{1,64})\?([QqBb])\?([^?]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_FOLD_BYTES = re.compile(rb"\r?\n(?=[ \t])")

_HTML_DROP = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]{0,4096}>")
_WHITESPACE = re.compile(r"\s+")


def text_codec(charset: str | None) -> str | None:
    """Return the Python codec name for a MIME charset label, or None when unusable.

    Labels that name non-text codecs (``base64``, ``rot13``, ``zlib``) are rejected:
    ``codecs.lookup`` accepts them, but bytes.decode would then fail or return bytes.
    """
    if not charset:
        return None
    label = charset.strip().strip("\"'").lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError, TypeError):
        return None
    try:
        b"".decode(info.name)
    except LookupError:
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode ``data`` with its declared charset, then UTF-8, then Windows-1252.

    The last step uses ``errors="replace"``, so some text always comes back. NUL
    characters are kept, and callers that build headers strip them.
    """
    codec = text_codec(charset)
    if codec is not None:
        try:
            return data.decode(codec)
        except (UnicodeError, ValueError, TypeError, LookupError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if codec is not None:
        try:
            return data.decode(codec, errors="replace")
        except (UnicodeError, ValueError, TypeError, LookupError):
            pass
    return data.decode("cp1252", errors="replace")


def _decode_word_payload(encoding: bytes, payload: bytes) -> bytes | None:
    if encoding in (b"B", b"b"):
        cleaned = payload.rstrip(b"=")
        cleaned += b"=" * (-len(cleaned) % 4)
        try:
            return base64.b64decode(cleaned)
        except (binascii.Error, ValueError):
            return None
    text = payload.replace(b"_", b" ")
    try:
        return binascii.a2b_qp(text)
    except (binascii.Error, ValueError):
        return None


def decode_header_value(raw: str | bytes | None) -> str:
    """Return a header value as readable text: unfolded, RFC 2047 words decoded.

    ``raw`` is the value as the ``email`` package stores it under the compat32 policy:
    8-bit bytes appear as surrogate escapes and are decoded as UTF-8, falling back to
    Windows-1252. Adjacent encoded-words of one charset are joined before decoding, so a
    multi-byte character split across two words survives.
    """
    if raw is None:
        return ""
    data = raw.encode("utf-8", errors="surrogateescape") if isinstance(raw, str) else bytes(raw)
    data = _FOLD_BYTES.sub(b"", data)

    pieces: list[tuple[str | None, bytes]] = []  # (charset or None for literal text, bytes)
    position = 0
    for match in _ENCODED_WORD.finditer(data):
        between = data[position : match.start()]
        decoded = _decode_word_payload(match.group(2), match.group(3))
        if decoded is None:
            continue
        # RFC 2047 section 6.2: whitespace between two encoded-words is not displayed.
        if between and not (pieces and pieces[-1][0] is not None and not between.strip()):
            pieces.append((None, between))
        charset = match.group(1).split(b"*", 1)[0].decode("ascii", errors="replace")
        if pieces and pieces[-1][0] is not None and pieces[-1][0].lower() == charset.lower():
            pieces[-1] = (pieces[-1][0], pieces[-1][1] + decoded)
        else:
            pieces.append((charset, decoded))
        position = match.end()
    if position < len(data):
        pieces.append((None, data[position:]))

    text = "".join(decode_bytes(chunk, charset) for charset, chunk in pieces)
    return text.replace("\x00", "").strip()


def unfold(raw: str) -> str:
    """Remove header folding (CRLF or LF followed by whitespace)."""
    return _FOLD.sub("", raw)


def html_to_text(markup: str) -> str:
    """Return the visible text of an HTML body, whitespace collapsed, for bodyPreview."""
    text = _HTML_DROP.sub(" ", markup)
    text = _HTML_TAG.sub(" ", text)
    return collapse_whitespace(html.unescape(text))


def collapse_whitespace(text: str) -> str:
    """Replace every run of whitespace with one space and strip both ends."""
    return _WHITESPACE.sub(" ", text.replace("\x00", " ")).strip()

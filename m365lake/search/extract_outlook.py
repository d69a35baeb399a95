"""Outlook .msg files ([MS-OXMSG]): headers, body, attachments and embedded messages.

extract-msg, the usual Python reader, is GPL-3.0, so .msg files are read here with
olefile (BSD-2-Clause), which the .doc and .ppt readers use too.
"""

from __future__ import annotations

import io
import struct

import olefile

from m365lake.search.extract_mail import NestedExtractor, message_as_text
from m365lake.search.extract_plain import decode_text, html_to_text
from m365lake.search.extract_rtf_compressed import decompress_rtf
from m365lake.search.extract_types import (
    AttachmentText,
    Extraction,
    ExtractionFailed,
    MessageText,
    failure,
    finish,
)

# MAPI property ids ([MS-OXPROPS]).
_SUBJECT = 0x0037
_SENDER_NAME = 0x0C1A
_SENDER_ADDRESS = 0x5D01
_SENDER_EMAIL = 0x0C1F
_DISPLAY_TO = 0x0E04
_DISPLAY_CC = 0x0E03
_DISPLAY_BCC = 0x0E02
_TRANSPORT_HEADERS = 0x007D
_BODY = 0x1000
_BODY_HTML = 0x1013
_RTF_COMPRESSED = 0x1009
_ATTACH_DATA = 0x3701
_ATTACH_FILENAME = 0x3704
_ATTACH_LONG_FILENAME = 0x3707
_ATTACH_MIME_TAG = 0x370E
_DISPLAY_NAME = 0x3001
_ATTACH_METHOD = 0x3705
_MESSAGE_CODEPAGE = 0x3FFD
_INTERNET_CPID = 0x3FDE

_TYPE_UNICODE = 0x001F
_TYPE_STRING8 = 0x001E
_TYPE_BINARY = 0x0102
_TYPE_OBJECT = 0x000D
_ATTACH_EMBEDDED_MSG = 5

# Embedded messages nested deeper than this are listed but not opened.
MAX_EMBEDDED_DEPTH = 10


class _MsgStorage:
    """One message (top-level or embedded) inside an .msg file."""

    def __init__(self, ole: olefile.OleFileIO, prefix: list[str], header_size: int) -> None:
        self.ole = ole
        self.prefix = prefix
        self.fixed = self._fixed_properties(header_size)
        codepage = self.fixed.get(_INTERNET_CPID) or self.fixed.get(_MESSAGE_CODEPAGE) or 1252
        self.codepage = f"cp{codepage}" if codepage not in (65001, 20127) else "utf-8"

    def _stream(self, name: str) -> bytes | None:
        path = [*self.prefix, name]
        if not self.ole.exists("/".join(path)):
            return None
        try:
            return bytes(self.ole.openstream(path).read())
        except Exception:
            return None

    def _fixed_properties(self, header_size: int) -> dict[int, int]:
        """Read integer properties from the property stream ([MS-OXMSG])."""
        data = self._stream("__properties_version1.0") or b""
        values: dict[int, int] = {}
        for offset in range(header_size, len(data) - 15, 16):
            tag, _flags, value = struct.unpack_from("<IIQ", data, offset)
            if tag & 0xFFFF in (0x0003, 0x0002):  # PT_LONG, PT_SHORT
                values[tag >> 16] = value & 0xFFFFFFFF
        return values

    def string(self, property_id: int) -> str:
        unicode = self._stream(f"__substg1.0_{property_id:04X}{_TYPE_UNICODE:04X}")
        if unicode is not None:
            return unicode.decode("utf-16-le", errors="replace").rstrip("\x00")
        eight_bit = self._stream(f"__substg1.0_{property_id:04X}{_TYPE_STRING8:04X}")
        if eight_bit is not None:
            return decode_text(eight_bit.rstrip(b"\x00"), self.codepage)
        return ""

    def binary(self, property_id: int) -> bytes | None:
        return self._stream(f"__substg1.0_{property_id:04X}{_TYPE_BINARY:04X}")

    def stored_bytes(self) -> int:
        """Return the total size of the streams under this storage (its size as stored)."""
        depth = len(self.prefix)
        total = 0
        for entry in self.ole.listdir(streams=True, storages=False):
            if entry[:depth] == self.prefix:
                try:
                    total += int(self.ole.get_size("/".join(entry)))
                except Exception:
                    continue
        return total

    def children(self, kind: str) -> list[list[str]]:
        depth = len(self.prefix)
        found = {
            tuple(entry[: depth + 1])
            for entry in self.ole.listdir(streams=True, storages=True)
            if len(entry) > depth
            and entry[:depth] == self.prefix
            and entry[depth].lower().startswith(kind)
        }
        return [list(entry) for entry in sorted(found)]


def _open(data: bytes) -> olefile.OleFileIO:
    try:
        return olefile.OleFileIO(io.BytesIO(data))
    except Exception as error:
        raise ExtractionFailed(
            "corrupt", f"the Outlook message is not a readable OLE compound file ({error})"
        ) from None


def extract_msg_message(
    data: bytes, *, max_chars: int, depth: int, extract_nested: NestedExtractor
) -> MessageText:
    """Extract the body and attachments of an Outlook .msg file."""
    ole = _open(data)
    try:
        message = _MsgStorage(ole, [], header_size=32)
        return _message_text(
            message, max_chars=max_chars, depth=depth, extract_nested=extract_nested
        )
    finally:
        ole.close()


def extract_msg_as_text(
    data: bytes, *, max_chars: int, depth: int, extract_nested: NestedExtractor
) -> Extraction:
    """Extract an Outlook .msg file (an attachment or a drive file) as one text."""
    ole = _open(data)
    try:
        message = _MsgStorage(ole, [], header_size=32)
        text = _message_text(
            message, max_chars=max_chars, depth=depth, extract_nested=extract_nested
        )
        return message_as_text(text, _headers(message), max_chars=max_chars)
    finally:
        ole.close()


def _headers(message: _MsgStorage) -> dict[str, str]:
    sender_name = message.string(_SENDER_NAME)
    sender_address = message.string(_SENDER_ADDRESS) or message.string(_SENDER_EMAIL)
    sender = (
        f"{sender_name} <{sender_address}>"
        if sender_name and sender_address
        else (sender_name or sender_address)
    )
    date = ""
    for line in message.string(_TRANSPORT_HEADERS).splitlines():
        if line.lower().startswith("date:"):
            date = line[5:].strip()
            break
    return {
        "Subject": message.string(_SUBJECT),
        "From": sender,
        "To": message.string(_DISPLAY_TO),
        "Cc": message.string(_DISPLAY_CC),
        "Bcc": message.string(_DISPLAY_BCC),
        "Date": date,
    }


def _message_text(
    message: _MsgStorage, *, max_chars: int, depth: int, extract_nested: NestedExtractor
) -> MessageText:
    body = _body(message, max_chars=max_chars)
    attachments = [
        _attachment(
            message, storage, max_chars=max_chars, depth=depth, extract_nested=extract_nested
        )
        for storage in message.children("__attach_version1.0_")
    ]
    return MessageText(body=body.text, body_extraction=body, attachments=attachments)


def _body(message: _MsgStorage, *, max_chars: int) -> Extraction:
    plain = message.string(_BODY)
    if plain.strip():
        return finish(plain, max_chars=max_chars)
    html = message.binary(_BODY_HTML)
    if html is None:
        html_string = message.string(_BODY_HTML)
        html = html_string.encode("utf-8") if html_string else None
    if html:
        return finish(html_to_text(decode_text(html, message.codepage))[0], max_chars=max_chars)
    compressed = message.binary(_RTF_COMPRESSED)
    if compressed:
        from m365lake.search.extract_plain import extract_rtf

        try:
            return extract_rtf(decompress_rtf(compressed), max_chars=max_chars)
        except ExtractionFailed as failed:
            return failure(failed.status, f"the message's RTF body: {failed.reason}")
    return finish("", max_chars=max_chars)


def _attachment(
    message: _MsgStorage,
    path: list[str],
    *,
    max_chars: int,
    depth: int,
    extract_nested: NestedExtractor,
) -> AttachmentText:
    attachment = _MsgStorage(message.ole, path, header_size=8)
    name = (
        attachment.string(_ATTACH_LONG_FILENAME)
        or attachment.string(_ATTACH_FILENAME)
        or attachment.string(_DISPLAY_NAME)
        or None
    )
    content_type = attachment.string(_ATTACH_MIME_TAG) or None
    embedded_path = [*path, f"__substg1.0_{_ATTACH_DATA:04X}{_TYPE_OBJECT:04X}"]
    is_embedded = attachment.fixed.get(_ATTACH_METHOD) == _ATTACH_EMBEDDED_MSG or (
        message.ole.exists("/".join(embedded_path))
        and message.ole.exists("/".join([*embedded_path, "__properties_version1.0"]))
    )
    if is_embedded:
        if depth + 1 > MAX_EMBEDDED_DEPTH:
            extraction = failure(
                "unsupported", "the embedded message is nested too deep, so it was not opened"
            )
            return AttachmentText(name, "message/rfc822", 0, extraction)
        embedded = _MsgStorage(message.ole, embedded_path, header_size=24)
        text = _message_text(
            embedded, max_chars=max_chars, depth=depth + 1, extract_nested=extract_nested
        )
        headers = _headers(embedded)
        extraction = message_as_text(text, headers, max_chars=max_chars)
        return AttachmentText(
            name or headers["Subject"] or None,
            content_type or "message/rfc822",
            embedded.stored_bytes(),
            extraction,
        )
    data = attachment.binary(_ATTACH_DATA)
    if data is None:
        if message.ole.exists("/".join(embedded_path)):
            extraction = failure("unsupported", "the attachment is an embedded OLE object")
        else:
            extraction = finish("", max_chars=max_chars)
        return AttachmentText(name, content_type, 0, extraction)
    extraction = extract_nested(data, name, content_type, max_chars, depth + 1)
    return AttachmentText(name, content_type, len(data), extraction)

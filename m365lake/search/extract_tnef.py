"""TNEF (winmail.dat) attachments ([MS-OXTNEF]): the body and files Outlook wraps in them.

tnefparse, the usual Python reader, is LGPL-3.0, and the format is small enough to read
here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

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

_SIGNATURE = 0x223E9F78
# Attribute ids ([MS-OXTNEF]), type in the high word and id in the low word.
_ATT_SUBJECT = 0x00018004
_ATT_BODY = 0x0002800C
_ATT_MAPI_PROPS = 0x00069003
_ATT_ATTACH_REND_DATA = 0x00069002
_ATT_ATTACH_TITLE = 0x00018010
_ATT_ATTACH_DATA = 0x0006800F
_ATT_ATTACHMENT = 0x00069005
_ATT_OEM_CODEPAGE = 0x00069007

# MAPI property ids and types ([MS-OXPROPS], [MS-OXCDATA]).
_PR_SUBJECT = 0x0037
_PR_BODY = 0x1000
_PR_BODY_HTML = 0x1013
_PR_RTF_COMPRESSED = 0x1009
_PR_ATTACH_DATA = 0x3701
_PR_ATTACH_LONG_FILENAME = 0x3707
_PR_ATTACH_MIME_TAG = 0x370E
_FIXED_SIZES = {
    0x0001: 4, 0x0002: 4, 0x0003: 4, 0x0004: 4, 0x0005: 8, 0x0006: 8, 0x0007: 8,
    0x000A: 4, 0x000B: 4, 0x0014: 8, 0x0040: 8, 0x0048: 16,
}  # fmt: skip
_VARIABLE_TYPES = {0x001E, 0x001F, 0x0102, 0x000D}
_MULTI_VALUE = 0x1000
# Embedded messages nested deeper than this are listed but not opened.
MAX_EMBEDDED_DEPTH = 10


@dataclass
class _Attachment:
    name: str | None = None
    content_type: str | None = None
    data: bytes | None = None
    embedded_tnef: bytes | None = None


@dataclass
class _Tnef:
    codepage: str | None = None
    """Code page of 8-bit strings from attOemCodepage, or None when the stream has none."""
    subject: str = ""
    body: str = ""
    html: bytes | None = None
    rtf: bytes | None = None
    attachments: list[_Attachment] = field(default_factory=list)


def extract_tnef(
    data: bytes, *, max_chars: int, depth: int, extract_nested: NestedExtractor
) -> Extraction:
    """Extract a TNEF stream as one text: subject, body and the wrapped attachments."""
    message, subject = extract_tnef_message(
        data, max_chars=max_chars, depth=depth, extract_nested=extract_nested
    )
    return message_as_text(message, {"Subject": subject}, max_chars=max_chars)


def extract_tnef_message(
    data: bytes, *, max_chars: int, depth: int, extract_nested: NestedExtractor
) -> tuple[MessageText, str]:
    """Extract the body and wrapped attachments of a TNEF stream, and its subject."""
    tnef = _parse(data)
    body = _body(tnef, max_chars=max_chars)
    attachments: list[AttachmentText] = []
    for attachment in tnef.attachments:
        if attachment.embedded_tnef is not None:
            if depth < MAX_EMBEDDED_DEPTH:
                extraction = extract_tnef(
                    attachment.embedded_tnef,
                    max_chars=max_chars,
                    depth=depth + 1,
                    extract_nested=extract_nested,
                )
            else:
                extraction = failure(
                    "unsupported", "the embedded message is nested too deep, so it was not opened"
                )
            size = len(attachment.embedded_tnef)
        elif attachment.data is not None:
            extraction = extract_nested(
                attachment.data, attachment.name, attachment.content_type, max_chars, depth + 1
            )
            size = len(attachment.data)
        else:
            extraction, size = finish("", max_chars=max_chars), 0
        attachments.append(
            AttachmentText(attachment.name, attachment.content_type, size, extraction)
        )
    message = MessageText(body=body.text, body_extraction=body, attachments=attachments)
    return message, tnef.subject


def _body(tnef: _Tnef, *, max_chars: int) -> Extraction:
    if tnef.body.strip():
        return finish(tnef.body, max_chars=max_chars)
    if tnef.html:
        return finish(html_to_text(tnef.html)[0], max_chars=max_chars)
    if tnef.rtf:
        from m365lake.search.extract_plain import extract_rtf

        try:
            return extract_rtf(decompress_rtf(tnef.rtf), max_chars=max_chars)
        except ExtractionFailed as failed:
            return failure(failed.status, f"the TNEF RTF body: {failed.reason}")
    return finish("", max_chars=max_chars)


def _parse(data: bytes) -> _Tnef:
    if len(data) < 6 or struct.unpack_from("<I", data, 0)[0] != _SIGNATURE:
        raise ExtractionFailed("corrupt", "the TNEF stream has no TNEF signature")
    tnef = _Tnef()
    position = 6
    current: _Attachment | None = None
    while position + 9 <= len(data):
        _level, attribute, length = struct.unpack_from("<BII", data, position)
        value = data[position + 9 : position + 9 + length]
        position += 9 + length + 2  # the 2-byte checksum is not verified
        if len(value) < length:
            break  # truncated stream: keep what was read
        if attribute == _ATT_OEM_CODEPAGE and len(value) >= 4:
            tnef.codepage = f"cp{struct.unpack_from('<I', value, 0)[0]}"
        elif attribute == _ATT_SUBJECT:
            tnef.subject = decode_text(value.rstrip(b"\x00"), tnef.codepage)
        elif attribute == _ATT_BODY:
            tnef.body = decode_text(value.rstrip(b"\x00"), tnef.codepage)
        elif attribute == _ATT_ATTACH_REND_DATA:
            current = _Attachment()
            tnef.attachments.append(current)
        elif attribute == _ATT_ATTACH_TITLE and current is not None:
            current.name = decode_text(value.rstrip(b"\x00"), tnef.codepage) or None
        elif attribute == _ATT_ATTACH_DATA and current is not None:
            current.data = value
        elif attribute == _ATT_MAPI_PROPS:
            _apply_message_props(tnef, _mapi_props(value))
        elif attribute == _ATT_ATTACHMENT and current is not None:
            _apply_attachment_props(current, _mapi_props(value), tnef.codepage)
    return tnef


def _apply_message_props(tnef: _Tnef, props: dict[int, tuple[int, bytes]]) -> None:
    if _PR_SUBJECT in props and not tnef.subject:
        tnef.subject = _string(*props[_PR_SUBJECT], tnef.codepage)
    if _PR_BODY in props and not tnef.body:
        tnef.body = _string(*props[_PR_BODY], tnef.codepage)
    if _PR_BODY_HTML in props:
        tnef.html = props[_PR_BODY_HTML][1]
    if _PR_RTF_COMPRESSED in props:
        tnef.rtf = props[_PR_RTF_COMPRESSED][1]


def _apply_attachment_props(
    attachment: _Attachment, props: dict[int, tuple[int, bytes]], codepage: str | None
) -> None:
    if _PR_ATTACH_LONG_FILENAME in props:
        attachment.name = _string(*props[_PR_ATTACH_LONG_FILENAME], codepage) or attachment.name
    if _PR_ATTACH_MIME_TAG in props:
        attachment.content_type = _string(*props[_PR_ATTACH_MIME_TAG], codepage) or None
    if _PR_ATTACH_DATA in props:
        kind, value = props[_PR_ATTACH_DATA]
        if kind == 0x000D and len(value) > 16:
            # An embedded message: a 16-byte interface id, then a TNEF stream of its own.
            attachment.embedded_tnef = value[16:]
        elif kind == 0x0102:
            attachment.data = value


def _string(kind: int, value: bytes, codepage: str | None) -> str:
    if kind == 0x001F:
        return value.decode("utf-16-le", errors="replace").rstrip("\x00")
    return decode_text(value.rstrip(b"\x00"), codepage)


def _mapi_props(data: bytes) -> dict[int, tuple[int, bytes]]:
    """Parse an attMAPIProps value ([MS-OXTNEF]), keeping what precedes any damage."""
    props: dict[int, tuple[int, bytes]] = {}
    if len(data) < 4:
        return props
    count = struct.unpack_from("<I", data, 0)[0]
    position = 4
    try:
        for _ in range(count):
            kind, property_id = struct.unpack_from("<HH", data, position)
            position += 4
            if property_id >= 0x8000:  # named property: GUID, kind, then id or name
                name_kind = struct.unpack_from("<I", data, position + 16)[0]
                position += 20
                if name_kind == 0:
                    position += 4
                else:
                    name_length = struct.unpack_from("<I", data, position)[0]
                    position += 4 + _padded(name_length)
            base = kind & ~_MULTI_VALUE
            values = 1
            if kind & _MULTI_VALUE or base in _VARIABLE_TYPES:
                values = struct.unpack_from("<I", data, position)[0]
                position += 4
            first: bytes | None = None
            for _ in range(values):
                if base in _VARIABLE_TYPES:
                    length = struct.unpack_from("<I", data, position)[0]
                    value = data[position + 4 : position + 4 + length]
                    position += 4 + _padded(length)
                elif base in _FIXED_SIZES:
                    value = data[position : position + _FIXED_SIZES[base]]
                    position += _FIXED_SIZES[base]
                else:
                    return props  # unknown type: the rest cannot be aligned
                if first is None:
                    first = value
            if first is not None and position <= len(data):
                props[property_id] = (base, first)
    except struct.error:
        pass
    return props


def _padded(length: int) -> int:
    return (length + 3) & ~3

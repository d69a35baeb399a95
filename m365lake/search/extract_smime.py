"""The signed content inside an S/MIME (PKCS #7 / CMS) blob, read without verifying it.

An opaque-signed message carries its MIME entity inside a CMS SignedData structure
(RFC 5652), so its text is readable without any key. Enveloped (encrypted) data is
recognised but cannot be read. CMS may be written in BER, with indefinite lengths and
chunked OCTET STRINGs, so the reader below accepts those as well as DER.
"""

from __future__ import annotations

from typing import Literal

# Object identifiers (RFC 5652) in their DER content encoding.
_SIGNED_DATA = bytes.fromhex("2a864886f70d010702")  # 1.2.840.113549.1.7.2
_ENVELOPED_DATA = bytes.fromhex("2a864886f70d010703")  # 1.2.840.113549.1.7.3
_AUTH_ENVELOPED_DATA = bytes.fromhex("2a864886f70d01091017")  # 1.2.840.113549.1.9.16.1.23

_SEQUENCE = 0x30
_SET = 0x31
_OID = 0x06
_OCTET_STRING = 0x04
_CONSTRUCTED_OCTET_STRING = 0x24
_CONTEXT_0 = 0xA0
# Nesting limit for the BER reader. CMS needs fewer than ten levels.
_MAX_DEPTH = 32

CmsKind = Literal["signed", "encrypted", "unknown"]


class _Tlv:
    """One BER element: tag, content start and end (exclusive) in the buffer."""

    def __init__(self, tag: int, start: int, end: int, next_offset: int) -> None:
        self.tag = tag
        self.start = start
        self.end = end
        self.next_offset = next_offset


def _read_tlv(data: bytes, offset: int, depth: int = 0) -> _Tlv:
    if depth > _MAX_DEPTH or offset + 2 > len(data):
        raise ValueError("truncated or too deeply nested BER")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte BER tags are not used by CMS")
    length_byte = data[offset + 1]
    position = offset + 2
    if length_byte == 0x80:  # indefinite length: children until an end-of-contents marker
        if not tag & 0x20:
            raise ValueError("indefinite length on a primitive BER element")
        child = position
        while True:
            if data[child : child + 2] == b"\x00\x00":
                return _Tlv(tag, position, child, child + 2)
            child = _read_tlv(data, child, depth + 1).next_offset
    if length_byte & 0x80:
        count = length_byte & 0x7F
        if count > 4 or position + count > len(data):
            raise ValueError("invalid BER length")
        length = int.from_bytes(data[position : position + count], "big")
        position += count
    else:
        length = length_byte
    end = position + length
    if end > len(data):
        raise ValueError("BER element runs past the end of the data")
    return _Tlv(tag, position, end, end)


def _children(data: bytes, element: _Tlv) -> list[_Tlv]:
    children = []
    offset = element.start
    while offset < element.end:
        child = _read_tlv(data, offset)
        children.append(child)
        offset = child.next_offset
    return children


def _octets(data: bytes, element: _Tlv, depth: int = 0) -> bytes:
    """Return the bytes of an OCTET STRING, joining the chunks of a constructed one."""
    if element.tag == _OCTET_STRING:
        return data[element.start : element.end]
    if element.tag != _CONSTRUCTED_OCTET_STRING or depth > _MAX_DEPTH:
        raise ValueError("expected an OCTET STRING")
    return b"".join(_octets(data, child, depth + 1) for child in _children(data, element))


def cms_kind(data: bytes) -> CmsKind:
    """Return whether a CMS blob is signed data, encrypted data, or something else."""
    try:
        content_info = _read_tlv(data, 0)
        oid = _children(data, content_info)[0]
    except (ValueError, IndexError):
        return "unknown"
    value = data[oid.start : oid.end]
    if value == _SIGNED_DATA:
        return "signed"
    if value in (_ENVELOPED_DATA, _AUTH_ENVELOPED_DATA):
        return "encrypted"
    return "unknown"


def signed_content(data: bytes) -> bytes | None:
    """Return the encapsulated content of a CMS SignedData blob, or None when it has none.

    A detached signature (application/pkcs7-signature) has no content, and neither has a
    damaged blob. The signature is not verified.
    """
    try:
        content_info = _read_tlv(data, 0)
        oid, explicit = _children(data, content_info)[:2]
        if data[oid.start : oid.end] != _SIGNED_DATA or explicit.tag != _CONTEXT_0:
            return None
        signed_data = _children(data, explicit)[0]
        # SignedData: version, digestAlgorithms, encapContentInfo, ...
        encapsulated = _children(data, signed_data)[2]
        parts = _children(data, encapsulated)
        if len(parts) < 2 or parts[1].tag != _CONTEXT_0:
            return None
        return _octets(data, _children(data, parts[1])[0])
    except (ValueError, IndexError):
        return None

"""Decompression of the compressed RTF that Outlook stores message bodies in ([MS-OXRTFCP])."""

from __future__ import annotations

import struct

from m365lake.search.extract_types import ExtractionFailed

# [MS-OXRTFCP]: the dictionary starts with this 207-byte RTF prefix.
_PREBUF = (
    b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss "
    b"\\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier"
    b"{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx"
)
_COMPRESSED = 0x75465A4C  # "LZFu"
_UNCOMPRESSED = 0x414C454D  # "MELA"
_DICTIONARY_SIZE = 4096
# A raw size above this is treated as damage, because real message bodies are far smaller.
_MAX_RAW_SIZE = 64 * 1024 * 1024


def decompress_rtf(data: bytes) -> bytes:
    """Return the RTF inside an Outlook PR_RTF_COMPRESSED value."""
    if len(data) < 16:
        raise ExtractionFailed("corrupt", "the compressed RTF header is truncated")
    _compressed_size, raw_size, compression, _crc = struct.unpack_from("<IIII", data, 0)
    if compression == _UNCOMPRESSED:
        return data[16 : 16 + raw_size]
    if compression != _COMPRESSED:
        raise ExtractionFailed("corrupt", f"unknown RTF compression type {compression:#x}")
    if raw_size > _MAX_RAW_SIZE:
        raise ExtractionFailed("too_large", f"the compressed RTF claims {raw_size:,} bytes")
    dictionary = bytearray(_DICTIONARY_SIZE)
    dictionary[: len(_PREBUF)] = _PREBUF
    write = len(_PREBUF)
    output = bytearray()
    position = 16
    while position < len(data) and len(output) < raw_size:
        control = data[position]
        position += 1
        for bit in range(8):
            if position >= len(data) or len(output) >= raw_size:
                break
            if control & (1 << bit):
                if position + 2 > len(data):
                    return bytes(output)
                reference = (data[position] << 8) | data[position + 1]
                position += 2
                offset, length = reference >> 4, (reference & 0x0F) + 2
                if offset == write:
                    return bytes(output)
                for step in range(length):
                    byte = dictionary[(offset + step) % _DICTIONARY_SIZE]
                    output.append(byte)
                    dictionary[write] = byte
                    write = (write + 1) % _DICTIONARY_SIZE
            else:
                byte = data[position]
                position += 1
                output.append(byte)
                dictionary[write] = byte
                write = (write + 1) % _DICTIONARY_SIZE
    return bytes(output)

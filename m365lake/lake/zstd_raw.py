"""Write a Zstandard frame whose blocks hold the content uncompressed.

Zstandard (RFC 8878) has a raw block type that stores its bytes as they are. A frame of
raw blocks costs a copy to write and is read by every zstd decoder, so content that does
not compress can skip the compressor while every blob file stays one zstd frame.
"""

from __future__ import annotations

import os
from typing import BinaryIO

MAGIC = b"\x28\xb5\x2f\xfd"
"""Zstandard frame magic number 0xFD2FB528, little-endian."""
MAX_BLOCK_BYTES = 128 * 1024
"""Largest block: the block size limit of RFC 8878, and the window this frame declares."""
FRAME_HEADER = MAGIC + bytes([0x00, 0x38])
"""Magic, then the frame header. Descriptor 0x00 sets no content size, no single segment,
no checksum and no dictionary. Window descriptor 0x38 is exponent 7 and mantissa 0,
a window of 2 ** (10 + 7) bytes = 128 KiB, so decoders allocate no more than that."""
_RAW_BLOCK_TYPE = 0


def block_header(size: int, *, last: bool) -> bytes:
    """Return the 3-byte little-endian header of a raw block of ``size`` bytes."""
    if not 0 <= size <= MAX_BLOCK_BYTES:
        raise ValueError(f"invalid raw block size {size}: expected 0 to {MAX_BLOCK_BYTES}")
    return ((size << 3) | (_RAW_BLOCK_TYPE << 1) | int(last)).to_bytes(3, "little")


_MAX_PIECES = 512
"""Buffers per ``os.writev`` call, within the IOV_MAX of 1024 on Linux and macOS."""


def _write_all(descriptor: int, pieces: list[bytes | memoryview]) -> None:
    """Write ``pieces`` in order, with one system call per ``_MAX_PIECES`` where possible.

    One call per batch rather than two per block keeps the writing thread from taking
    the GIL back dozens of times per MiB while another thread needs it.
    """
    for start in range(0, len(pieces), _MAX_PIECES):
        group = pieces[start : start + _MAX_PIECES]
        written = os.writev(descriptor, group) if hasattr(os, "writev") else 0
        for piece in group:
            view = memoryview(piece)[written:]
            written = max(0, written - len(piece))
            # Only a short write (full disk, signal) leaves bytes here, and os.write
            # raises OSError when nothing more can be written.
            while view:
                view = view[os.write(descriptor, view) :]


class RawFrameWriter:
    """Write content into ``file`` as one zstd frame of raw blocks.

    The blocks go to the file's descriptor, past any buffer of ``file``: nothing else may
    write to it meanwhile. ``finish`` ends the frame with an empty last block, as libzstd
    does when it ends a frame after a flush.
    """

    def __init__(self, file: BinaryIO) -> None:
        file.flush()
        self._descriptor = file.fileno()
        _write_all(self._descriptor, [FRAME_HEADER])

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        pieces: list[bytes | memoryview] = []
        for start in range(0, len(view), MAX_BLOCK_BYTES):
            block = view[start : start + MAX_BLOCK_BYTES]
            pieces += [block_header(len(block), last=False), block]
        _write_all(self._descriptor, pieces)

    def finish(self) -> None:
        _write_all(self._descriptor, [block_header(0, last=True)])

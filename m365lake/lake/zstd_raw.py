"""Write a Zstandard frame whose blocks hold the content uncompressed.

Zstandard (RFC 8878) has a raw block type that stores its bytes as they are. A frame of
raw blocks costs a copy to write and is read by every zstd decoder, so content that does
not compress can skip the compressor while every blob file stays one zstd frame.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

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


class Writable(Protocol):
    """A file object whose ``write`` writes every byte it is given, as buffered files do."""

    def write(self, data: bytes | memoryview, /) -> object: ...


@runtime_checkable
class BlockWritable(Writable, Protocol):
    """A file object that also writes many equal blocks, each after the same prefix, at once."""

    def write_blocks(self, data: memoryview, prefix: bytes, block: int, /) -> None: ...


class RawFrameWriter:
    """Write content into ``file`` as one zstd frame of raw blocks.

    ``finish`` ends the frame with an empty last block, as libzstd does when it ends a
    frame after a flush.
    """

    def __init__(self, file: Writable) -> None:
        self._file = file
        file.write(FRAME_HEADER)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        whole = len(view) - len(view) % MAX_BLOCK_BYTES
        if whole and isinstance(self._file, BlockWritable):
            full_block = block_header(MAX_BLOCK_BYTES, last=False)
            self._file.write_blocks(view[:whole], full_block, MAX_BLOCK_BYTES)
            view = view[whole:]
        for start in range(0, len(view), MAX_BLOCK_BYTES):
            block = view[start : start + MAX_BLOCK_BYTES]
            self._file.write(block_header(len(block), last=False))
            self._file.write(block)

    def finish(self) -> None:
        self._file.write(block_header(0, last=True))

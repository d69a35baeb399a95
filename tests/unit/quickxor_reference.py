"""Pure-Python QuickXorHash, the reference the numpy version in m365lake is tested against.

This was m365lake's implementation before the numpy one. It shares no code with it: it
folds 160-byte blocks with Python's big-integer XOR, which holds the GIL and ran at about
290 to 450 MB/s on 1 MiB updates on a 2-CPU x86_64 machine.

The hash is a 160-bit accumulator. Byte ``i`` of the stream is XORed into it starting
at bit ``11 * i mod 160``, wrapping around inside the 160 bits. At the end the 64-bit
little-endian stream length is XORed into the last 8 of the 20 output bytes, and the
result is base64-encoded. Because 11 and 160 are coprime, the bit position of a byte
depends only on its index modulo 160, so ``update`` XORs the stream into 160 lanes and
``digest`` places each lane in the accumulator once.
"""

from __future__ import annotations

import base64

WIDTH_BITS = 160
SHIFT = 11
BLOCK = WIDTH_BITS  # bytes per lane cycle: the bit position repeats every 160 bytes
_MASK = (1 << WIDTH_BITS) - 1
FOLD_BYTES = BLOCK * 8192
"""Largest slice ``update`` folds as one integer, because folding costs more than linear
time in the slice length. On a 2-CPU x86_64 machine, one 2 GiB call took 25 s and 9.8 GB
of memory. 256 MiB took 2.8 s at once and 0.24 s in slices of this size."""


def _fold_blocks(chunk: bytes) -> int:
    """XOR the consecutive 160-byte blocks of ``chunk`` into one 160-byte integer."""
    value = int.from_bytes(chunk, "little")
    blocks = len(chunk) // BLOCK
    while blocks > 1:
        low_blocks = blocks // 2
        shift = low_blocks * BLOCK * 8
        value = (value & ((1 << shift) - 1)) ^ (value >> shift)
        blocks -= low_blocks
    return value


class ReferenceQuickXorHash:
    """Streaming QuickXorHash: ``update`` with chunks of any size, then ``b64digest``."""

    def __init__(self, data: bytes | memoryview = b"") -> None:
        self._lanes = 0
        self._pending = b""
        self._length = 0
        if data:
            self.update(data)

    def update(self, data: bytes | memoryview) -> None:
        if len(data) > FOLD_BYTES:
            view = memoryview(data)
            for start in range(0, len(view), FOLD_BYTES):
                self.update(view[start : start + FOLD_BYTES])
            return
        self._length += len(data)
        buffer = self._pending + data if self._pending else bytes(data)
        aligned = len(buffer) - len(buffer) % BLOCK
        if aligned:
            self._lanes ^= _fold_blocks(buffer[:aligned])
        self._pending = buffer[aligned:]

    def digest(self) -> bytes:
        lanes = (self._lanes ^ int.from_bytes(self._pending, "little")).to_bytes(BLOCK, "little")
        accumulator = 0
        for index, value in enumerate(lanes):
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


def reference_quickxor_b64(data: bytes) -> str:
    """Return the base64 QuickXorHash of ``data``."""
    return ReferenceQuickXorHash(data).b64digest()

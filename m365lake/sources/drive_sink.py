"""Collect one download's content and its QuickXorHash, off the event loop for large content.

Content up to the lake's inline threshold stays in memory and is stored inline. Larger
content goes into a ``BlobWriter`` in batches, each joined, hashed (QuickXorHash and
SHA-256), compressed and written on a worker thread of its own. ``bytes.join``, hashlib,
numpy, zstandard and file writes release the GIL, so the event loop keeps reading the
network meanwhile, and the event loop itself only keeps references to the chunks. At most
``MAX_QUEUED_BATCHES`` batches wait for the worker, and ``write`` waits beyond that, so
memory stays bounded when the disk is slower than the network.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from m365lake.lake import BlobWriter, ContentRef, Lake
from m365lake.quickxor import QuickXorHash

BATCH_BYTES = 4 << 20
"""Bytes of content handed to the worker thread at once. Each batch costs the event loop a
few GIL handoffs to the worker. On a 2-CPU x86_64 virtual machine, a 2 GiB backup took
0.25 s less client CPU with 4 MiB batches than with 1 MiB batches, and 8 MiB batches
saved nothing more (``bench/files.py``)."""

MAX_QUEUED_BATCHES = 4
"""Batches handed to the worker thread and not yet written: 16 MiB, which lets a 500 MB/s
download go on for about 30 ms while the worker waits for the disk or for a CPU."""


class ContentSink:
    """Store content in memory up to the inline threshold, else in a blob on a worker thread.

    Call ``write`` for each chunk, then ``quickxor_b64`` and ``commit``. Call ``abort``
    on any failure. One sink belongs to one download and one event loop.
    """

    def __init__(self, lake: Lake) -> None:
        self._lake = lake
        self._chunks: list[bytes] = []
        """Chunks not yet handed to the worker thread, or the whole content while inline."""
        self._chunk_bytes = 0
        self._quickxor = QuickXorHash()
        self._writer: BlobWriter | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._queued: deque[Future[None]] = deque()

    async def write(self, chunk: bytes) -> None:
        # The event loop only keeps a reference. The worker thread joins the chunks of a
        # batch, and CPython's bytes.join releases the GIL while it copies 1 MiB or more.
        self._chunks.append(chunk)
        self._chunk_bytes += len(chunk)
        if self._writer is None:
            if self._chunk_bytes <= self._lake.inline_threshold:
                return
            self._writer = self._lake.blobs.writer()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-writer")
        if self._chunk_bytes >= BATCH_BYTES:
            await self._submit()

    async def _submit(self) -> None:
        assert self._executor is not None
        while len(self._queued) >= MAX_QUEUED_BATCHES:
            await self._wait_oldest()
        batch, self._chunks, self._chunk_bytes = self._chunks, [], 0
        self._queued.append(self._executor.submit(self._store_batch, batch))

    async def _wait_oldest(self) -> None:
        """Wait until the worker has stored the oldest queued batch, and raise its error if any."""
        await asyncio.wrap_future(self._queued[0])
        self._queued.popleft()

    def _store_batch(self, chunks: list[bytes]) -> None:
        """Hash and write one batch, on the worker thread."""
        assert self._writer is not None
        batch = b"".join(chunks)
        self._quickxor.update(batch)
        self._writer.write(batch)

    async def quickxor_b64(self) -> str:
        """Return the QuickXorHash of all content written, once every batch is stored."""
        if self._writer is None:
            return QuickXorHash(b"".join(self._chunks)).b64digest()
        if self._chunks:
            await self._submit()
        while self._queued:
            await self._wait_oldest()
        return self._quickxor.b64digest()

    async def commit(self) -> tuple[ContentRef, bool]:
        """Store the content; return its reference and whether a new blob was written.

        Call it after ``quickxor_b64``, which hands the last bytes to the worker thread.
        """
        if self._writer is None:
            data = b"".join(self._chunks)
            return ContentRef(hashlib.sha256(data).hexdigest(), len(data), data), False
        assert self._executor is not None
        assert not self._queued
        assert not self._chunks
        digest, size = await asyncio.wrap_future(self._executor.submit(self._writer.commit))
        self._executor.shutdown(wait=False)
        return ContentRef(digest, size, None), self._writer.created

    def abort(self) -> None:
        """Discard the content.

        Blocks until the worker thread finishes the batch it is writing, if any, so the
        temp file is closed and removed when this returns.
        """
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._queued.clear()
        if self._writer is not None:
            self._writer.abort()
        self._chunks = []
        self._chunk_bytes = 0

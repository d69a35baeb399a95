"""Collect one download's content and its QuickXorHash, off the event loop for large content.

Content up to the lake's inline threshold stays in memory and is stored inline. Larger
content goes into a ``BlobWriter`` in batches, each hashed (QuickXorHash and SHA-256),
compressed and written on a worker thread of its own. hashlib, numpy, zstandard and file
writes release the GIL, so the event loop keeps reading the network meanwhile. At most
``MAX_QUEUED_BATCHES`` batches wait for the worker, and ``write`` waits beyond that, so
memory stays bounded when the disk is slower than the network.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from m365lake.lake import BlobWriter, ContentRef, Lake
from m365lake.lake.blobs import WRITE_BATCH_BYTES
from m365lake.quickxor import QuickXorHash

MAX_QUEUED_BATCHES = 16
"""Batches of ``WRITE_BATCH_BYTES`` handed to the worker thread and not yet written. The
worker stalls while the kernel starts writing back a blob (up to 33 ms measured on a
2-CPU virtual machine), and 16 MiB lets a 500 MB/s download continue through that."""


class ContentSink:
    """Store content in memory up to the inline threshold, else in a blob on a worker thread.

    Call ``write`` for each chunk, then ``quickxor_b64`` and ``commit``. Call ``abort``
    on any failure. One sink belongs to one download and one event loop.
    """

    def __init__(self, lake: Lake) -> None:
        self._lake = lake
        self._buffer = bytearray()
        self._quickxor = QuickXorHash()
        self._writer: BlobWriter | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._queued: deque[Future[None]] = deque()

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        if self._writer is None:
            if len(self._buffer) <= self._lake.inline_threshold:
                return
            self._writer = self._lake.blobs.writer()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-writer")
        if len(self._buffer) >= WRITE_BATCH_BYTES:
            await self._submit()

    async def _submit(self) -> None:
        assert self._executor is not None
        while len(self._queued) >= MAX_QUEUED_BATCHES:
            await self._wait_oldest()
        # The worker owns the batch from here on, so the sink starts a new buffer.
        batch, self._buffer = self._buffer, bytearray()
        self._queued.append(self._executor.submit(self._store_batch, batch))

    async def _wait_oldest(self) -> None:
        """Wait until the worker has stored the oldest queued batch, and raise its error if any."""
        await asyncio.wrap_future(self._queued[0])
        self._queued.popleft()

    def _store_batch(self, batch: bytearray) -> None:
        """Hash and write one batch, on the worker thread."""
        assert self._writer is not None
        self._quickxor.update(batch)
        self._writer.write(batch)

    async def quickxor_b64(self) -> str:
        """Return the QuickXorHash of all content written, once every batch is stored."""
        if self._writer is None:
            return QuickXorHash(self._buffer).b64digest()
        if self._buffer:
            await self._submit()
        while self._queued:
            await self._wait_oldest()
        return self._quickxor.b64digest()

    async def commit(self) -> tuple[ContentRef, bool]:
        """Store the content; return its reference and whether a new blob was written.

        Call it after ``quickxor_b64``, which hands the last bytes to the worker thread.
        """
        if self._writer is None:
            data = bytes(self._buffer)
            return ContentRef(hashlib.sha256(data).hexdigest(), len(data), data), False
        assert self._executor is not None and not self._queued and not self._buffer
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
        self._buffer = bytearray()

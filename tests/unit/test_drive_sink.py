"""ContentSink: inline and blob content, hashes, the worker queue bound and abort."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path

import pytest

from m365lake.lake import ContentRef, Lake
from m365lake.lake.blobs import sha256_hex
from m365lake.sources import drive_sink
from m365lake.sources.drive_sink import BATCH_BYTES, MAX_QUEUED_BATCHES, ContentSink
from tests.unit.quickxor_reference import reference_quickxor_b64

CHUNK = 16_384
"""A typical size of the pieces httpx yields for a response body."""


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.open(tmp_path / "lake", inline_threshold=100_000)


def blob_files(lake: Lake) -> list[Path]:
    return [path for path in (lake.root / "blobs").rglob("*") if path.is_file()]


async def feed(sink: ContentSink, data: bytes) -> None:
    for start in range(0, len(data), CHUNK):
        await sink.write(data[start : start + CHUNK])


def test_small_content_is_inline(lake: Lake) -> None:
    data = random.Random(1).randbytes(100_000)

    async def run() -> tuple[str, tuple[ContentRef, bool]]:
        sink = ContentSink(lake)
        await feed(sink, data)
        return await sink.quickxor_b64(), await sink.commit()

    quickxor, (content, new_blob) = asyncio.run(run())

    assert quickxor == reference_quickxor_b64(data)
    assert content.inline == data
    assert content.sha256 == sha256_hex(data)
    assert new_blob is False
    assert blob_files(lake) == []


@pytest.mark.parametrize(
    "size", [100_001, BATCH_BYTES - 1, BATCH_BYTES, BATCH_BYTES + 1, 2 * BATCH_BYTES + 777]
)
def test_large_content_is_blob(lake: Lake, size: int) -> None:
    data = random.Random(size).randbytes(size)

    async def run() -> tuple[str, tuple[ContentRef, bool]]:
        sink = ContentSink(lake)
        await feed(sink, data)
        return await sink.quickxor_b64(), await sink.commit()

    quickxor, (content, new_blob) = asyncio.run(run())

    assert quickxor == reference_quickxor_b64(data)
    assert content.inline is None
    assert content.sha256 == sha256_hex(data)
    assert content.size == size
    assert new_blob is True
    assert lake.blobs.read(content.sha256) == data


def test_abort_removes_temp_file(lake: Lake) -> None:
    data = random.Random(2).randbytes(3 * BATCH_BYTES)

    async def run() -> None:
        sink = ContentSink(lake)
        await feed(sink, data)
        sink.abort()

    asyncio.run(run())

    assert blob_files(lake) == []


def test_write_waits_when_worker_is_behind(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    stored: list[int] = []
    real_store = ContentSink._store_batch

    def slow_store(self: ContentSink, batch: list[bytes]) -> None:
        release.wait()
        stored.append(sum(map(len, batch)))
        real_store(self, batch)

    monkeypatch.setattr(drive_sink.ContentSink, "_store_batch", slow_store)
    data = random.Random(3).randbytes((MAX_QUEUED_BATCHES + 3) * BATCH_BYTES)

    async def run() -> tuple[bool, int]:
        sink = ContentSink(lake)
        writing = asyncio.create_task(feed(sink, data))
        try:
            for _ in range(50):
                await asyncio.sleep(0)
            blocked = not writing.done()
            queued = len(sink._queued)
        finally:
            release.set()
        await writing
        await sink.quickxor_b64()
        await sink.commit()
        return blocked, queued

    blocked, queued = asyncio.run(run())

    assert blocked
    assert queued == MAX_QUEUED_BATCHES
    assert sum(stored) == len(data)

"""Blob store and content references: dedup, compression, raw blocks, integrity checks."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import zstandard

from m365lake.errors import LakeError, LakeIntegrityError
from m365lake.lake import BlobStore, BlobWriter, ContentRef, Lake, direct_file, zstd_raw
from m365lake.lake.blobs import WRITE_BATCH_BYTES, sha256_hex


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.open(tmp_path / "lake", inline_threshold=100)


def blob_file(lake: Lake, digest: str) -> Path:
    return lake.root / BlobStore.relative_path(digest)


def test_put_returns_sha256_of_raw_content(lake: Lake) -> None:
    data = b"attachment bytes " * 100

    digest = lake.blobs.put(data)

    assert digest == sha256_hex(data)
    assert lake.blobs.exists(digest)
    assert lake.blobs.read(digest) == data


def test_put_stores_zstd_under_sharded_path(lake: Lake) -> None:
    data = b"x" * 10_000

    digest = lake.blobs.put(data)
    path = blob_file(lake, digest)

    assert path.relative_to(lake.root).parts[:4] == ("blobs", "sha256", digest[:2], digest[2:4])
    stored = path.read_bytes()
    assert len(stored) < len(data)
    assert zstandard.ZstdDecompressor().decompress(stored) == data


def test_put_same_content_twice_dedups(lake: Lake) -> None:
    data = b"same attachment sent to 500 people"

    first = lake.blobs.put(data)
    mtime = blob_file(lake, first).stat().st_mtime_ns
    second = lake.blobs.put(data)

    assert first == second
    assert blob_file(lake, first).stat().st_mtime_ns == mtime
    assert list(lake.blobs.iter_hashes()) == [first]


def test_put_leaves_no_temp_files(lake: Lake) -> None:
    lake.blobs.put(b"one")
    lake.blobs.put(b"two")

    names = [path.name for path in (lake.root / "blobs").rglob("*") if path.is_file()]

    assert len(names) == 2
    assert not any(name.startswith(".tmp-") for name in names)


def test_read_tampered_blob_raises(lake: Lake) -> None:
    digest = lake.blobs.put(b"original content")
    blob_file(lake, digest).write_bytes(zstandard.ZstdCompressor().compress(b"forged content"))

    with pytest.raises(LakeIntegrityError, match="altered"):
        lake.blobs.read(digest)


def test_read_corrupt_zstd_raises(lake: Lake) -> None:
    digest = lake.blobs.put(b"original content" * 50)
    path = blob_file(lake, digest)
    path.write_bytes(path.read_bytes()[:10])

    with pytest.raises(LakeIntegrityError):
        lake.blobs.read(digest)


def test_read_missing_blob_raises(lake: Lake) -> None:
    with pytest.raises(LakeIntegrityError, match="missing"):
        lake.blobs.read(sha256_hex(b"never stored"))


def test_put_does_not_repair_tampered_blob(lake: Lake) -> None:
    data = b"evidence"
    digest = lake.blobs.put(data)
    blob_file(lake, digest).write_bytes(b"garbage")

    lake.blobs.put(data)

    with pytest.raises(LakeIntegrityError):
        lake.blobs.read(digest)


@pytest.mark.parametrize("bad_id", ["", "abc", "A" * 64, "../" + "a" * 61, "g" * 64])
def test_invalid_blob_id_rejected(lake: Lake, bad_id: str) -> None:
    with pytest.raises(LakeError, match="invalid blob id"):
        lake.blobs.read(bad_id)


def test_verify_all_finds_tampered_blob(lake: Lake) -> None:
    lake.blobs.put(b"a" * 200)
    bad = lake.blobs.put(b"b" * 200)
    assert lake.blobs.verify_all() == 2

    blob_file(lake, bad).write_bytes(zstandard.ZstdCompressor().compress(b"c" * 200))

    with pytest.raises(LakeIntegrityError):
        lake.blobs.verify_all()


def test_store_content_small_is_inline(lake: Lake) -> None:
    data = b"s" * 100

    ref = lake.store_content(data)

    assert ref == ContentRef(sha256_hex(data), 100, data)
    assert not lake.blobs.exists(ref.sha256)
    assert lake.read_content(ref.sha256, ref.inline) == data


def test_store_content_large_is_blob(lake: Lake) -> None:
    data = b"L" * 101

    ref = lake.store_content(data)

    assert ref.inline is None
    assert ref.size == 101
    assert lake.blobs.exists(ref.sha256)
    assert lake.read_content(ref.sha256, None) == data


def test_read_content_inline_mismatch_raises(lake: Lake) -> None:
    ref = lake.store_content(b"short")

    with pytest.raises(LakeIntegrityError):
        lake.read_content(ref.sha256, b"shorT")


def test_default_inline_threshold_is_1_mib(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "lake")

    assert lake.inline_threshold == 1024 * 1024
    assert lake.store_content(b"x" * 1024 * 1024).inline is not None
    assert lake.store_content(b"x" * (1024 * 1024 + 1)).inline is None


def test_writer_streams_chunks_into_blob(lake: Lake) -> None:
    chunks = [bytes([n]) * 70_000 for n in range(5)]

    with lake.blobs.writer() as writer:
        for chunk in chunks:
            writer.write(chunk)
        digest, size = writer.commit()

    data = b"".join(chunks)
    assert digest == sha256_hex(data)
    assert size == len(data)
    assert lake.blobs.read(digest) == data
    assert blob_file(lake, digest).stat().st_size < len(data)


def test_writer_dedups_existing_blob(lake: Lake) -> None:
    data = b"shared content " * 1000
    first = lake.blobs.put(data)
    mtime = blob_file(lake, first).stat().st_mtime_ns

    with lake.blobs.writer() as writer:
        writer.write(data)
        digest, _ = writer.commit()

    assert digest == first
    assert blob_file(lake, first).stat().st_mtime_ns == mtime
    assert list(lake.blobs.iter_hashes()) == [first]


def test_writer_abort_leaves_nothing(lake: Lake) -> None:
    with lake.blobs.writer() as writer:
        writer.write(b"partial download")

    files = [path for path in (lake.root / "blobs").rglob("*") if path.is_file()]
    assert files == []
    with pytest.raises(LakeError, match="aborted"):
        writer.write(b"more")


def test_writer_exception_in_block_discards_temp(lake: Lake) -> None:
    with pytest.raises(RuntimeError), lake.blobs.writer() as writer:
        writer.write(b"x" * 1000)
        raise RuntimeError("connection lost")

    assert [path for path in (lake.root / "blobs").rglob("*") if path.is_file()] == []


def test_writer_empty_content(lake: Lake) -> None:
    with lake.blobs.writer() as writer:
        digest, size = writer.commit()

    assert size == 0
    assert lake.blobs.read(digest) == b""


def test_writer_commit_twice_raises(lake: Lake) -> None:
    writer = lake.blobs.writer()
    writer.write(b"once")
    writer.commit()

    with pytest.raises(LakeError, match="committed"):
        writer.commit()


def test_writer_reports_created(lake: Lake) -> None:
    with lake.blobs.writer() as first:
        first.write(b"content")
        first.commit()
    with lake.blobs.writer() as second:
        second.write(b"content")
        second.commit()

    assert first.created
    assert not second.created


# ---- stored forms: compressed or raw blocks -------------------------------------------


def write_blob(lake: Lake, chunks: list[bytes]) -> tuple[str, BlobWriter]:
    with lake.blobs.writer() as writer:
        for chunk in chunks:
            writer.write(chunk)
        digest, _ = writer.commit()
    return digest, writer


def test_writer_stores_random_content_in_raw_blocks(lake: Lake) -> None:
    data = random.Random(1).randbytes(3 * WRITE_BATCH_BYTES + 12_345)

    digest, writer = write_blob(lake, [data[i : i + 16_384] for i in range(0, len(data), 16_384)])

    assert writer.compressed is False
    stored = blob_file(lake, digest).read_bytes()
    assert stored.startswith(zstd_raw.FRAME_HEADER)
    blocks = -(-len(data) // zstd_raw.MAX_BLOCK_BYTES) + 1
    assert len(stored) == len(zstd_raw.FRAME_HEADER) + 3 * blocks + len(data)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(stored) == data
    assert lake.blobs.read(digest) == data


def test_writer_compresses_compressible_content(lake: Lake) -> None:
    data = b"quarterly report, draft 3\n" * 100_000

    digest, writer = write_blob(lake, [data])

    assert writer.compressed is True
    assert blob_file(lake, digest).stat().st_size < len(data) // 10
    assert lake.blobs.read(digest) == data


def test_writer_decides_from_first_batch(lake: Lake) -> None:
    noise = random.Random(2).randbytes(WRITE_BATCH_BYTES)
    text = b"line of text\n" * 200_000

    digest, writer = write_blob(lake, [noise, text])

    assert writer.compressed is False
    assert lake.blobs.read(digest) == noise + text


def test_writer_empty_content_reads_back(lake: Lake) -> None:
    digest, writer = write_blob(lake, [])

    assert digest == sha256_hex(b"")
    assert writer.size == 0
    assert lake.blobs.read(digest) == b""


def test_writer_dedups_raw_and_compressed_forms(lake: Lake) -> None:
    data = random.Random(3).randbytes(2 * WRITE_BATCH_BYTES)
    first = lake.blobs.put(data)
    mtime = blob_file(lake, first).stat().st_mtime_ns

    digest, writer = write_blob(lake, [data])

    assert digest == first
    assert writer.created is False
    assert blob_file(lake, first).stat().st_mtime_ns == mtime
    assert lake.blobs.read(digest) == data


def test_blob_from_older_streaming_writer_reads(lake: Lake) -> None:
    # Before raw blocks, every streamed blob was a zstd stream without a content size.
    data = b"archived before raw blocks existed " * 5_000
    digest = sha256_hex(data)
    path = blob_file(lake, digest)
    path.parent.mkdir(parents=True)
    compressor = zstandard.ZstdCompressor(level=3)
    with path.open("wb") as file, compressor.stream_writer(file, closefd=False) as stream:
        stream.write(data)

    assert lake.blobs.read(digest) == data
    assert lake.blobs.verify_all() == 1


def test_raw_blob_tampered_raises(lake: Lake) -> None:
    data = random.Random(4).randbytes(WRITE_BATCH_BYTES + 1)
    digest, _ = write_blob(lake, [data])
    path = blob_file(lake, digest)
    stored = bytearray(path.read_bytes())
    stored[-100] ^= 0xFF
    path.write_bytes(bytes(stored))

    with pytest.raises(LakeIntegrityError, match="altered"):
        lake.blobs.read(digest)


def reject_direct_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make blob files fall back to the page cache, as on a file system without O_DIRECT."""
    monkeypatch.setattr(direct_file.DirectFile, "_enable_direct", lambda self: False)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "page-cache"])
@pytest.mark.parametrize(
    "size",
    [
        1,
        direct_file.ALIGNMENT - 7,
        zstd_raw.MAX_BLOCK_BYTES,
        direct_file.BUFFER_BYTES - 6,
        direct_file.BUFFER_BYTES + zstd_raw.MAX_BLOCK_BYTES + 1,
    ],
)
def test_writer_raw_blob_reads_back(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, direct: bool, size: int
) -> None:
    if not direct:
        reject_direct_io(monkeypatch)
    data = random.Random(size).randbytes(size)

    digest, writer = write_blob(lake, [data[i : i + 16_384] for i in range(0, size, 16_384)])

    assert writer.compressed is False
    assert digest == sha256_hex(data)
    assert writer.size == size
    stored = blob_file(lake, digest).read_bytes()
    assert (
        len(stored)
        == len(zstd_raw.FRAME_HEADER) + 3 * (-(-size // zstd_raw.MAX_BLOCK_BYTES) + 1) + size
    )
    assert lake.blobs.read(digest) == data


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "page-cache"])
def test_writer_compressed_blob_reads_back(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    if not direct:
        reject_direct_io(monkeypatch)
    generator = random.Random(7)
    words = [b"budget", b"forecast", b"meeting", b"draft", b"quarter"]
    data = b" ".join(generator.choice(words) for _ in range(2_000_000))

    digest, writer = write_blob(lake, [data[i : i + 65_536] for i in range(0, len(data), 65_536)])

    assert writer.compressed is True
    assert blob_file(lake, digest).stat().st_size < len(data) // 3
    assert lake.blobs.read(digest) == data


def test_writer_leaves_no_temp_file_after_commit(lake: Lake) -> None:
    data = random.Random(8).randbytes(direct_file.BUFFER_BYTES + 5)

    digest, _ = write_blob(lake, [data])

    assert [path.name for path in (lake.root / "blobs").rglob("*") if path.is_file()] == [digest]


def test_raw_blob_with_any_block_sizes_reads(lake: Lake) -> None:
    # The writer ends a block at each batch boundary, and the batch size changed
    # between versions, so frames of raw blocks of any sizes must read.
    data = random.Random(9).randbytes(300_000)
    digest = sha256_hex(data)
    path = blob_file(lake, digest)
    path.parent.mkdir(parents=True)
    with path.open("wb") as file:
        frame = zstd_raw.RawFrameWriter(file)
        cuts = [0, 100, 100_100, 231_172, len(data)]
        for start, stop in itertools.pairwise(cuts):
            frame.write(data[start:stop])
        frame.finish()

    assert lake.blobs.read(digest) == data


@pytest.mark.parametrize("size", [-1, zstd_raw.MAX_BLOCK_BYTES + 1])
def test_raw_block_header_rejects_invalid_size(size: int) -> None:
    with pytest.raises(ValueError, match="invalid raw block size"):
        zstd_raw.block_header(size, last=False)


@pytest.mark.parametrize(
    "sizes",
    [[], [0], [1], [zstd_raw.MAX_BLOCK_BYTES], [zstd_raw.MAX_BLOCK_BYTES + 1, 5], [700_001, 3]],
)
def test_raw_frame_is_valid_zstd(tmp_path: Path, sizes: list[int]) -> None:
    generator = random.Random(len(sizes))
    parts = [generator.randbytes(size) for size in sizes]
    path = tmp_path / "frame.zst"
    with path.open("wb") as file:
        frame = zstd_raw.RawFrameWriter(file)
        for part in parts:
            frame.write(part)
        frame.finish()

    assert zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes()) == b"".join(
        parts
    )


@pytest.mark.parametrize(
    "sizes",
    [
        [3 * zstd_raw.MAX_BLOCK_BYTES],
        [5, 40 * zstd_raw.MAX_BLOCK_BYTES + 17, zstd_raw.MAX_BLOCK_BYTES - 1],
    ],
)
def test_raw_frame_through_direct_file_is_valid_zstd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sizes: list[int]
) -> None:
    bulk_calls: list[int] = []
    real_write_blocks = direct_file.DirectFile.write_blocks

    def spy(self: direct_file.DirectFile, data: memoryview, prefix: bytes, block: int) -> None:
        bulk_calls.append(len(data) // block)
        real_write_blocks(self, data, prefix, block)

    monkeypatch.setattr(direct_file.DirectFile, "write_blocks", spy)
    generator = random.Random(sum(sizes))
    parts = [generator.randbytes(size) for size in sizes]
    file = direct_file.DirectFile(tmp_path / "frame.zst")

    frame = zstd_raw.RawFrameWriter(file)
    for part in parts:
        frame.write(part)
    frame.finish()
    file.finish()
    file.close()

    assert bulk_calls == [
        size // zstd_raw.MAX_BLOCK_BYTES for size in sizes if size >= zstd_raw.MAX_BLOCK_BYTES
    ]
    decompressed = (
        zstandard.ZstdDecompressor()
        .decompressobj()
        .decompress((tmp_path / "frame.zst").read_bytes())
    )
    assert decompressed == b"".join(parts)

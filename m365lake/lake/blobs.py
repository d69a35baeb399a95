"""Content-addressed blob store: zstd files named by the SHA-256 of the raw bytes."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, cast

import zstandard

from m365lake.errors import LakeError, LakeIntegrityError, LakeKeyError
from m365lake.lake.direct_file import DirectFile
from m365lake.lake.encryption import (
    MAGIC,
    DecryptingReader,
    EncryptingWriter,
    KeyRing,
    decrypt_bytes,
    encrypt_bytes,
    is_encrypted,
)
from m365lake.lake.zstd_raw import RawFrameWriter

if TYPE_CHECKING:
    from m365lake.lake.storage import Storage

logger = logging.getLogger(__name__)

BLOB_DIR = "blobs/sha256"
READ_CHUNK_BYTES = 1 << 20
"""Raw bytes per chunk that ``BlobStore.read_chunks`` yields by default."""
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ContentRef:
    """Reference to a piece of content: inline bytes for small content, else a blob hash."""

    sha256: str
    size: int
    inline: bytes | None
    """The raw content when it is stored inline in Parquet; None when it is a blob."""
    created: bool = field(default=False, compare=False)
    """Whether storing the content wrote a new blob (False: inline, or already stored)."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_hash(sha256: str) -> str:
    if not _SHA256_HEX.match(sha256):
        raise LakeError(f"invalid blob id {sha256!r}: expected 64 lowercase hex digits")
    return sha256


class BlobStore:
    """Blobs under ``blobs/sha256/ab/cd/<hex>``, each written once and never replaced."""

    def __init__(self, storage: Storage, *, level: int = 3, keys: KeyRing | None = None) -> None:
        self._storage = storage
        self._level = level
        self.keys = keys if keys is not None else KeyRing()
        """Keys that encrypt new blobs (when one is current) and decrypt stored ones."""

    @staticmethod
    def relative_path(sha256: str) -> str:
        _check_hash(sha256)
        return f"{BLOB_DIR}/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def exists(self, sha256: str) -> bool:
        return self._storage.exists(self.relative_path(sha256))

    def put(self, data: bytes) -> str:
        """Store ``data`` unless a blob with the same hash exists; return its SHA-256."""
        return self.store(data)[0]

    def store(self, data: bytes) -> tuple[str, bool]:
        """Store ``data`` unless a blob with the same hash exists.

        Return its SHA-256 and whether this call wrote it, so callers that count new
        blobs need not ask the store first (a request each on object storage).
        """
        digest = sha256_hex(data)
        relative = self.relative_path(digest)
        if self._storage.exists(relative):
            return digest, False

        # A compressor object is not thread-safe, and making one per blob is cheap.
        compressed = zstandard.ZstdCompressor(level=self._level).compress(data)
        if self.keys.enabled:
            compressed = encrypt_bytes(compressed, self.keys)
        created = self._storage.publish(relative, compressed)
        if created:
            logger.debug(
                "stored blob %s (%d bytes raw, %d compressed)", digest, len(data), len(compressed)
            )
        return digest, created

    def writer(self) -> BlobWriter:
        """Open a streaming writer for content too large to hold in memory.

        Use it as a context manager: leaving the block without ``commit()`` discards the
        temp file.
        """
        return BlobWriter(self._storage, level=self._level, keys=self.keys)

    def read(self, sha256: str) -> bytes:
        """Return the raw content of a blob after checking it still hashes to its name."""
        relative = self.relative_path(sha256)
        try:
            compressed = self._storage.read_bytes(relative)
        except FileNotFoundError:
            raise LakeIntegrityError(
                f"blob {sha256} is missing from {self._storage.url(relative)}; "
                "restore it from a backup copy of the lake or re-run the backup"
            ) from None
        if is_encrypted(compressed):
            compressed = decrypt_bytes(compressed, self.keys, str(self._storage.url(relative)))
        try:
            # A decompression object also reads frames without a content size in the
            # header, which ``BlobWriter`` writes because it learns the size only at the end.
            data = zstandard.ZstdDecompressor().decompressobj().decompress(compressed)
        except zstandard.ZstdError as error:
            raise LakeIntegrityError(
                f"blob {sha256} at {self._storage.url(relative)} is not valid zstd data "
                f"({error}); the file was damaged or altered after it was written"
            ) from error
        actual = sha256_hex(data)
        if actual != sha256:
            raise LakeIntegrityError(
                f"blob {sha256} at {self._storage.url(relative)} hashes to {actual}; "
                "the file was damaged or altered after it was written"
            )
        return data

    def read_chunks(self, sha256: str, *, chunk_bytes: int = READ_CHUNK_BYTES) -> Iterator[bytes]:
        """Yield the raw content of a blob in chunks of at most ``chunk_bytes``.

        Memory contains one chunk and the decompressor's window, so blobs of any size can be
        copied out. The SHA-256 is checked as the chunks pass, and LakeIntegrityError is
        raised after the last chunk when it does not match, so a caller that stored the
        chunks must discard them then.
        """
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
        relative = self.relative_path(sha256)
        location = self._storage.url(relative)
        try:
            handle = self._storage.open_read(relative)
        except FileNotFoundError:
            raise LakeIntegrityError(
                f"blob {sha256} is missing from {location}; restore it from a backup copy "
                "of the lake or re-run the backup"
            ) from None
        digest = hashlib.sha256()
        try:
            encrypted = is_encrypted(handle.read(len(MAGIC)))
            handle.seek(0)
            source = DecryptingReader(handle, self.keys, str(location)) if encrypted else handle
            # The cast satisfies the IO[bytes] stub: zstandard only calls ``read``.
            reader = zstandard.ZstdDecompressor().stream_reader(
                cast("BinaryIO", source), closefd=False
            )
            while True:
                try:
                    chunk = reader.read(chunk_bytes)
                except zstandard.ZstdError as error:
                    raise LakeIntegrityError(
                        f"blob {sha256} at {location} is not valid zstd data ({error}); the "
                        "file was damaged or altered after it was written"
                    ) from error
                if not chunk:
                    break
                digest.update(chunk)
                yield chunk
        finally:
            handle.close()
        if digest.hexdigest() != sha256:
            raise LakeIntegrityError(
                f"blob {sha256} at {location} hashes to {digest.hexdigest()}; the file was "
                "damaged or altered after it was written"
            )

    def iter_hashes(self) -> Iterator[str]:
        """Yield the SHA-256 of every stored blob, for verification sweeps."""
        for relative in self._storage.list_tree(BLOB_DIR):
            name = relative.rsplit("/", 1)[-1]
            if _SHA256_HEX.match(name):
                yield name

    def check_all(self) -> tuple[int, list[str]]:
        """Read back every blob and return the count and one message per damaged blob."""
        count = 0
        problems = []
        for digest in self.iter_hashes():
            count += 1
            try:
                self.read(digest)
            except (LakeIntegrityError, LakeKeyError) as error:
                problems.append(str(error))
            except OSError as error:
                problems.append(f"blob {digest} could not be read: {error}")
        return count, problems

    def verify_all(self) -> int:
        """Read back every blob and return the count.

        Raises LakeIntegrityError naming every damaged blob, after reading all of them.
        """
        count, problems = self.check_all()
        if problems:
            raise LakeIntegrityError(
                f"{len(problems)} of {count} blobs are damaged:\n" + "\n".join(problems),
                problems=problems,
            )
        return count


WRITE_BATCH_BYTES = 1 << 20
"""Bytes gathered from smaller writes before they are hashed and compressed, and bytes of
the first batch that a trial compression decides on."""

MAX_STORED_RATIO = 0.97
"""Compressed size over raw size of the first batch above which a blob is stored in raw
blocks. Content that zstd shrinks by less than 3 % is not worth compressing."""


class BlobWriter:
    """Stream content into the blob store chunk by chunk.

    Chunks are hashed and written in batches into a local temp file (under
    ``blobs/sha256`` of a local lake, in the spool folder of one on object storage), so
    the memory used stays bounded by one batch, the compressor's window and the file's
    buffer. The file is written with direct I/O where the file system allows it. The first
    batch decides how the blob is stored: zstd-compressed, or in zstd raw blocks when a
    trial compression of it saves less than 3 %. Either way the file is one zstd frame
    that ``BlobStore.read`` and the ``zstd`` tool read. With a current encryption key the
    frame is sealed in chunks on its way to the file (``m365lake.lake.encryption``), and
    only m365lake reads it. ``commit`` links or uploads the temp file under its SHA-256
    name, or drops it when a blob with that hash already exists.

    NOTE: only the first batch is tried, so content whose first MiB does not compress
    is stored raw even when later parts would compress.

    A writer is not thread-safe. It may move between threads as long as one call runs
    at a time.
    """

    def __init__(self, storage: Storage, *, level: int = 3, keys: KeyRing | None = None) -> None:
        self._storage = storage
        self._level = level
        self._temp = storage.new_temp(BLOB_DIR, "blob")
        self._file = DirectFile(self._temp)
        # With a current key the zstd frame passes through the chunk sealer on its way
        # to the file, so the blob is compressed, then encrypted, in one streaming pass.
        self._sink: DirectFile | EncryptingWriter = self._file
        if keys is not None and keys.enabled:
            self._sink = EncryptingWriter(self._file, keys)
        self._frame: zstandard.ZstdCompressionWriter | RawFrameWriter | None = None
        self._digest = hashlib.sha256()
        self._pending = bytearray()
        self.size = 0
        """Raw bytes written so far."""
        self.compressed: bool | None = None
        """Whether the blob is zstd-compressed (False: raw blocks); None before the first batch."""
        self.created = False
        """Whether ``commit`` stored a new blob (False when the hash was already stored)."""
        self._status = "open"

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._status != "open":
            raise LakeError(f"blob writer is already {self._status}")
        self.size += len(chunk)
        if not self._pending and len(chunk) >= WRITE_BATCH_BYTES:
            self._write_batch(chunk)
            return
        # HTTP bodies arrive in 16 KiB pieces. In a profile of a 512 MiB download, zstd
        # spent about four times as long on such pieces as on one call for the same bytes.
        self._pending += chunk
        if len(self._pending) >= WRITE_BATCH_BYTES:
            self._drain()

    def _drain(self) -> None:
        if self._pending:
            self._write_batch(self._pending)
            self._pending = bytearray()

    def _write_batch(self, batch: bytes | bytearray | memoryview) -> None:
        self._digest.update(batch)
        if self._frame is None:
            self._frame = self._open_frame(batch)
        self._frame.write(batch)

    def _open_frame(
        self, first: bytes | bytearray | memoryview
    ) -> zstandard.ZstdCompressionWriter | RawFrameWriter:
        """Choose how the blob is stored from a trial compression of its first batch."""
        compressor = zstandard.ZstdCompressor(level=self._level)
        sample = memoryview(first)[:WRITE_BATCH_BYTES]
        trial = compressor.compress(sample)
        self.compressed = len(trial) < len(sample) * MAX_STORED_RATIO
        if self.compressed:
            # zstandard 0.25 calls ``write`` on the file, and ``flush`` only where the file
            # has one, which DirectFile has not. The cast satisfies the IO[bytes] stub.
            return compressor.stream_writer(cast("BinaryIO", self._sink), closefd=False)
        return RawFrameWriter(self._sink)

    def commit(self) -> tuple[str, int]:
        """Publish the blob and return its SHA-256 and raw size."""
        if self._status != "open":
            raise LakeError(f"blob writer is already {self._status}")
        try:
            self._drain()
            if self._frame is None:
                self._frame = self._open_frame(b"")
            if isinstance(self._frame, RawFrameWriter):
                self._frame.finish()
            else:
                self._frame.flush(zstandard.FLUSH_FRAME)
            if isinstance(self._sink, EncryptingWriter):
                self._sink.finish()
            self._file.finish()
            self._file.close()
            digest = self._digest.hexdigest()
            # The first writer of a hash wins and an existing blob is never replaced.
            if not self._storage.adopt(self._temp, BlobStore.relative_path(digest)):
                logger.debug("blob %s already stored; dropping the duplicate", digest)
            else:
                self.created = True
                logger.debug(
                    "stored blob %s (%d bytes raw, %s)",
                    digest,
                    self.size,
                    "zstd-compressed" if self.compressed else "raw blocks",
                )
        except BaseException:
            self.abort()
            raise
        self._status = "committed"
        return digest, self.size

    def abort(self) -> None:
        """Discard the temp file; does nothing after ``commit``."""
        if self._status != "open":
            return
        self._status = "aborted"
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temp)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.abort()

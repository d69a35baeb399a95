"""Write a new file with direct I/O (``O_DIRECT``), past the page cache.

The blob store writes gigabytes that the archive does not read back. Written through the
page cache, each page is copied into the cache, tracked, written back and dropped. On a
2-CPU x86_64 virtual machine (Linux 6.18, ext4 on virtio-blk) that cost 0.9 to 1.0 s of
system CPU per 2 GiB, even with the pages dropped every 32 MiB. Written with
``O_DIRECT`` from 4 MiB buffers, it cost 0.06 to 0.07 s, and the disk took the data at
least as fast (``bench/RESULTS.md``, files.py).

Direct I/O needs the memory address, the file offset and the length of each write
aligned to the device's logical block size. ``DirectFile`` copies what it is given into
a page-aligned buffer and writes that buffer out whole, so every write but the last is
aligned, and the unaligned tail goes through the page cache. Where the file system
rejects direct I/O (Linux returns EINVAL) or the platform has no ``O_DIRECT`` (macOS),
the whole file goes through the page cache, and its pages are dropped every
``WRITEBACK_BYTES``.

NOTE: each direct write waits for the disk, so a writer has one request of at most
``BUFFER_BYTES`` in flight. It kept up with 500 MB/s downloads on the local virtio disk
above and was not measured on network block storage, where each request takes longer.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
from pathlib import Path

import numpy as np

from m365lake.lake.storage import PRIVATE_FILE_MODE

logger = logging.getLogger(__name__)

ALIGNMENT = 4096
"""Alignment of file offsets and lengths of direct writes. Linux requires a multiple of the
logical block size, which is 512 or 4096 bytes on common disks. The buffer is an
anonymous mmap, so its address is aligned to the page size (4096 bytes or more)."""

BUFFER_BYTES = 4 << 20
"""Bytes gathered before one write. On the machine above, direct writes of 1 MiB took
0.15 to 0.16 s of system CPU per 2 GiB, and writes of 4 MiB 0.06 to 0.07 s."""

WRITEBACK_BYTES = 32 << 20
"""Bytes written through the page cache after which they are sent to disk and dropped
from the cache, when direct I/O is not available. On the machine above, writing 2 GiB
into the page cache took 4.9 to 6.9 s, 3.3 to 4.5 s of it system CPU. Dropped every
32 MiB, it took 1.4 to 1.5 s, and the cache held at most 192 MiB of it."""

NUMPY_COPY_BYTES = 16 << 10
"""Pieces from this size on are copied into the buffer by numpy, which releases the GIL."""

_O_DIRECT: int = getattr(os, "O_DIRECT", 0)


def _set_direct_flag(descriptor: int, *, on: bool) -> None:
    # fcntl exists only on Unix, and only Unix systems have O_DIRECT to set.
    import fcntl

    flags = fcntl.fcntl(descriptor, fcntl.F_GETFL)
    if on:
        flags |= _O_DIRECT
    else:
        flags &= ~_O_DIRECT
    fcntl.fcntl(descriptor, fcntl.F_SETFL, flags)


class DirectFile:
    """A new file written with direct I/O where the file system allows it.

    Call ``write`` for each piece, then ``finish`` to write the rest and fsync the file,
    then ``close``. ``close`` without ``finish`` leaves a file with only the buffers
    written out so far. Not thread-safe.
    """

    def __init__(self, path: Path, *, buffer_bytes: int = BUFFER_BYTES) -> None:
        if buffer_bytes <= 0 or buffer_bytes % ALIGNMENT:
            raise ValueError(
                f"invalid buffer size {buffer_bytes}: expected a positive multiple of {ALIGNMENT}"
            )
        self.path = path
        self._buffer = mmap.mmap(-1, buffer_bytes)
        self._view = memoryview(self._buffer)
        self._array = np.frombuffer(self._buffer, dtype=np.uint8)
        # O_EXCL: the caller names a new temp file, and two writers must never share one.
        self._descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        self.direct = False
        """Whether writes bypass the page cache, all but the unaligned tail. It turns False
        when the file system rejects a direct write, and the rest then goes through the cache."""
        try:
            self.direct = self._enable_direct()
        except BaseException:
            os.close(self._descriptor)
            os.unlink(path)
            raise
        self._filled = 0
        self._file_size = 0
        """Bytes written to the file so far, not counting the buffer."""
        self._written_back = 0
        """File size at the last writeback, from which ``WRITEBACK_BYTES`` is counted."""
        self.closed = False

    def _enable_direct(self) -> bool:
        """Turn on ``O_DIRECT`` and return whether it is on.

        It stays off where the platform or the file system has no direct I/O.
        """
        if not _O_DIRECT:
            return False
        try:
            # Linux checks on F_SETFL, as on open, that the file system supports O_DIRECT.
            _set_direct_flag(self._descriptor, on=True)
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
            logger.debug(
                "direct I/O is not available for %s, so it goes through the page cache", self.path
            )
            return False
        return True

    def _disable_direct(self, error: OSError) -> None:
        _set_direct_flag(self._descriptor, on=False)
        self.direct = False
        logger.info(
            "direct write to %s failed (%s), so the rest goes through the page cache",
            self.path,
            error,
        )

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Copy ``data`` into the buffer and write the buffer out each time it is full."""
        view = memoryview(data).cast("B")
        length = len(view)
        while view:
            take = min(len(view), len(self._view) - self._filled)
            if take >= NUMPY_COPY_BYTES:
                # numpy releases the GIL while it copies, and a memoryview copy holds it.
                np.copyto(
                    self._array[self._filled : self._filled + take],
                    np.frombuffer(view[:take], dtype=np.uint8),
                )
            else:
                self._view[self._filled : self._filled + take] = view[:take]
            view = view[take:]
            self._advance(take)
        return length

    def write_blocks(self, data: bytes | bytearray | memoryview, prefix: bytes, block: int) -> None:
        """Write every ``block`` bytes of ``data`` preceded by ``prefix``.

        The length of ``data`` must be a multiple of ``block``. One numpy copy places all
        the blocks that fit in the buffer, so a caller on a worker thread takes the GIL
        back once per buffer rather than once per block.
        """
        view = memoryview(data).cast("B")
        if len(view) % block:
            raise ValueError(f"invalid data length {len(view)}: expected a multiple of {block}")
        unit = len(prefix) + block
        prefix_array = np.frombuffer(prefix, dtype=np.uint8)
        while view:
            fitting = min((len(self._view) - self._filled) // unit, len(view) // block)
            if not fitting:
                # This block crosses the end of the buffer.
                self.write(prefix)
                self.write(view[:block])
                view = view[block:]
                continue
            units = self._array[self._filled : self._filled + fitting * unit].reshape(fitting, unit)
            units[:, : len(prefix)] = prefix_array
            blocks = np.frombuffer(view[: fitting * block], dtype=np.uint8).reshape(fitting, block)
            np.copyto(units[:, len(prefix) :], blocks)
            view = view[fitting * block :]
            self._advance(fitting * unit)

    def _advance(self, filled: int) -> None:
        """Count ``filled`` more bytes in the buffer, and write it out when it is full."""
        self._filled += filled
        if self._filled == len(self._view):
            self._write_buffer(0, self._filled)
            self._filled = 0

    def _write_buffer(self, start: int, stop: int) -> None:
        """Write bytes ``start`` to ``stop`` of the buffer at the end of the file."""
        view = self._view[start:stop]
        while view:
            try:
                written = os.write(self._descriptor, view)
            except OSError as error:
                # EINVAL from a direct write means the file system wants another alignment
                # or takes no direct writes after all. Nothing was written, so retry.
                if not self.direct or error.errno != errno.EINVAL:
                    raise
                self._disable_direct(error)
                continue
            # A short write (full disk, signal) leaves the rest, and a later direct write
            # of it fails with EINVAL if it is unaligned, which turns direct I/O off.
            view = view[written:]
            self._file_size += written
        if not self.direct and self._file_size - self._written_back >= WRITEBACK_BYTES:
            self._drop_written_pages(wait=False)

    def _drop_written_pages(self, *, wait: bool) -> None:
        """Start writing cached pages of the file to disk and drop those already written.

        ``POSIX_FADV_DONTNEED`` starts writeback of dirty pages without waiting for it,
        and drops the clean ones, so each call drops what the previous calls sent to
        disk. With ``wait``, the file is on disk and out of the page cache afterwards.
        """
        if wait:
            os.fsync(self._descriptor)
        if hasattr(os, "posix_fadvise"):
            # Length 0 means to the end of the file.
            os.posix_fadvise(self._descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        self._written_back = self._file_size

    def finish(self) -> None:
        """Write the buffered bytes and fsync the file, so it survives a crash."""
        if self.closed:
            raise ValueError(f"cannot finish {self.path}: the file is already closed")
        filled = self._filled
        aligned = filled - filled % ALIGNMENT if self.direct else filled
        self._write_buffer(0, aligned)
        if aligned < filled:
            # A direct write cannot end inside an aligned block, so the tail of the file
            # goes through the page cache.
            _set_direct_flag(self._descriptor, on=False)
            self._write_buffer(aligned, filled)
        self._filled = 0
        # fsync even when every byte bypassed the page cache, because direct I/O does not
        # flush the disk's write cache or the file's size and block map.
        self._drop_written_pages(wait=True)

    def close(self) -> None:
        """Close the file and free the buffer. Does nothing when already closed."""
        if self.closed:
            return
        self.closed = True
        os.close(self._descriptor)
        # mmap.close raises BufferError while numpy or a memoryview still uses the buffer.
        del self._array
        self._view.release()
        self._buffer.close()

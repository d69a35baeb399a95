"""DirectFile: direct writes, the page cache fallbacks, the unaligned tail, content read back."""

from __future__ import annotations

import errno
import fcntl
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from m365lake.lake import direct_file
from m365lake.lake.direct_file import ALIGNMENT, NUMPY_COPY_BYTES, DirectFile

BUFFER = 4 * ALIGNMENT
"""A small buffer, so that a few KiB of test data cross its end several times."""
PIECE_SIZES = [1, 1000, ALIGNMENT, NUMPY_COPY_BYTES + 5, 7]
"""Sizes of the pieces given to ``write`` in turn: below, at and above the numpy copy size."""


def write_file(path: Path, data: bytes, *, buffer_bytes: int = BUFFER) -> DirectFile:
    """Write ``data`` through a DirectFile in pieces of ``PIECE_SIZES``; finish and close it."""
    file = DirectFile(path, buffer_bytes=buffer_bytes)
    start = 0
    turn = 0
    while start < len(data):
        size = PIECE_SIZES[turn % len(PIECE_SIZES)]
        assert file.write(data[start : start + size]) == len(data[start : start + size])
        start += size
        turn += 1
    file.finish()
    file.close()
    return file


def direct_io_available(directory: Path) -> bool:
    file = DirectFile(directory / "probe")
    file.close()
    os.unlink(directory / "probe")
    return file.direct


def record_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, int]]:
    """Record each ``os.write`` as (whether O_DIRECT was set on the descriptor, length)."""
    writes: list[tuple[bool, int]] = []
    real_write = os.write

    def write(descriptor: int, data: memoryview) -> int:
        flags = fcntl.fcntl(descriptor, fcntl.F_GETFL)
        writes.append((bool(flags & os.O_DIRECT), len(data)))
        return real_write(descriptor, data)

    monkeypatch.setattr(os, "write", write)
    return writes


def reject_direct_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make F_SETFL with O_DIRECT fail as on a file system without direct I/O."""
    real_fcntl: Callable[[int, int, int], int] = fcntl.fcntl

    def fake_fcntl(descriptor: int, command: int, argument: int = 0) -> int:
        if command == fcntl.F_SETFL and argument & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fcntl(descriptor, command, argument)

    monkeypatch.setattr(fcntl, "fcntl", fake_fcntl)


@pytest.fixture
def direct_dir(tmp_path: Path) -> Path:
    if not hasattr(os, "O_DIRECT") or not direct_io_available(tmp_path):
        pytest.skip("the temp directory's file system does not take O_DIRECT")
    return tmp_path


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        ALIGNMENT - 1,
        ALIGNMENT,
        ALIGNMENT + 1,
        BUFFER - 1,
        BUFFER,
        BUFFER + 1,
        5 * BUFFER + 123,
    ],
)
def test_content_reads_back(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)

    write_file(tmp_path / "file", data)

    assert (tmp_path / "file").read_bytes() == data


def test_direct_writes_are_aligned(direct_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes = record_writes(monkeypatch)
    data = random.Random(1).randbytes(3 * BUFFER + ALIGNMENT + 1000)

    file = write_file(direct_dir / "file", data)

    direct_lengths = [length for direct, length in writes if direct]
    assert file.direct
    assert direct_lengths == [BUFFER, BUFFER, BUFFER, ALIGNMENT]
    assert [length for direct, length in writes if not direct] == [1000]
    assert (direct_dir / "file").read_bytes() == data


def test_aligned_size_has_no_tail_write(direct_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes = record_writes(monkeypatch)
    data = random.Random(2).randbytes(2 * BUFFER + ALIGNMENT)

    write_file(direct_dir / "file", data)

    assert writes == [(True, BUFFER), (True, BUFFER), (True, ALIGNMENT)]
    assert (direct_dir / "file").read_bytes() == data


def test_fallback_when_file_system_rejects_direct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reject_direct_flag(monkeypatch)
    writes = record_writes(monkeypatch)
    data = random.Random(3).randbytes(2 * BUFFER + 777)

    file = write_file(tmp_path / "file", data)

    assert file.direct is False
    assert writes == [(False, BUFFER), (False, BUFFER), (False, 777)]
    assert (tmp_path / "file").read_bytes() == data


def test_fallback_when_direct_write_rejected(
    direct_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    attempts: list[bool] = []

    def write(descriptor: int, data: memoryview) -> int:
        direct = bool(fcntl.fcntl(descriptor, fcntl.F_GETFL) & os.O_DIRECT)
        attempts.append(direct)
        if direct:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(descriptor, data)

    monkeypatch.setattr(os, "write", write)
    data = random.Random(4).randbytes(3 * BUFFER + 5)

    file = write_file(direct_dir / "file", data)

    assert file.direct is False
    assert attempts == [True, False, False, False, False]
    assert (direct_dir / "file").read_bytes() == data


def test_other_write_errors_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def write(descriptor: int, data: memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", write)
    file = DirectFile(tmp_path / "file", buffer_bytes=BUFFER)

    with pytest.raises(OSError, match="No space left"):
        file.write(bytes(BUFFER))
    file.close()


def test_fallback_drops_pages_every_writeback_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reject_direct_flag(monkeypatch)
    monkeypatch.setattr(direct_file, "WRITEBACK_BYTES", 2 * BUFFER)
    advice: list[int] = []
    real_fadvise = os.posix_fadvise

    def record(descriptor: int, offset: int, length: int, flag: int) -> None:
        advice.append(flag)
        real_fadvise(descriptor, offset, length, flag)

    monkeypatch.setattr(os, "posix_fadvise", record)
    data = random.Random(5).randbytes(5 * BUFFER)

    write_file(tmp_path / "file", data)

    # Two while writing (at 2 and 4 buffers), one at finish.
    assert advice == [os.POSIX_FADV_DONTNEED] * 3
    assert (tmp_path / "file").read_bytes() == data


@pytest.mark.parametrize(
    ("count", "block", "lead"),
    [
        (0, 1000, 0),
        (1, 1000, 0),
        (7, 5000, 3),
        (3, BUFFER, 100),
        (40, 400, BUFFER - 2),
    ],
)
def test_write_blocks_puts_prefix_before_each_block(
    tmp_path: Path, count: int, block: int, lead: int
) -> None:
    generator = random.Random(count)
    before = generator.randbytes(lead)
    data = generator.randbytes(count * block)
    prefix = b"\x01\x02\x03"
    file = DirectFile(tmp_path / "file", buffer_bytes=BUFFER)

    file.write(before)
    file.write_blocks(data, prefix, block)
    file.write(b"end")
    file.finish()
    file.close()

    blocks = [prefix + data[start : start + block] for start in range(0, len(data), block)]
    assert (tmp_path / "file").read_bytes() == before + b"".join(blocks) + b"end"


def test_write_blocks_rejects_partial_block(tmp_path: Path) -> None:
    file = DirectFile(tmp_path / "file", buffer_bytes=BUFFER)

    with pytest.raises(ValueError, match="multiple of 1000"):
        file.write_blocks(bytes(1500), b"", 1000)
    file.close()


def test_existing_path_raises(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"taken")

    with pytest.raises(FileExistsError):
        DirectFile(tmp_path / "file")

    assert (tmp_path / "file").read_bytes() == b"taken"


@pytest.mark.parametrize("size", [0, -ALIGNMENT, 1000, BUFFER + 1])
def test_invalid_buffer_size_raises(tmp_path: Path, size: int) -> None:
    with pytest.raises(ValueError, match="invalid buffer size"):
        DirectFile(tmp_path / "file", buffer_bytes=size)

    assert not (tmp_path / "file").exists()


def test_close_without_finish_keeps_written_buffers(tmp_path: Path) -> None:
    data = random.Random(6).randbytes(BUFFER + 10)
    file = DirectFile(tmp_path / "file", buffer_bytes=BUFFER)

    file.write(data)
    file.close()
    file.close()

    assert (tmp_path / "file").read_bytes() == data[:BUFFER]


def test_finish_after_close_raises(tmp_path: Path) -> None:
    file = DirectFile(tmp_path / "file", buffer_bytes=BUFFER)
    file.close()

    with pytest.raises(ValueError, match="already closed"):
        file.finish()

"""Run the m365lake command with a byte quota on the lake folder: a full disk, simulated.

``python -m tests.faults.enospc ROOT QUOTA_BYTES m365lake-arguments…`` counts the bytes
that the process writes to files under ROOT and fails every write past QUOTA_BYTES with
OSError ENOSPC, as a full file system does. It covers both ways the lake writes: Python
file objects (Parquet, manifests, small blobs) and ``os.write`` on descriptors (large
blobs written with direct I/O). Reads, and writes elsewhere, are left alone.
"""

from __future__ import annotations

import builtins
import errno
import os
import sys
from pathlib import Path
from typing import Any

_real_open = builtins.open
_real_os_open = os.open
_real_os_write = os.write


class Quota:
    """Bytes written under ``root`` so far, against a limit."""

    def __init__(self, root: Path, limit: int) -> None:
        self.root = root.resolve()
        self.limit = limit
        self.used = 0
        self.descriptors: set[int] = set()

    def covers(self, path: Any) -> bool:
        try:
            return Path(os.fsdecode(path)).resolve().is_relative_to(self.root)
        except (TypeError, ValueError):
            return False

    def charge(self, size: int) -> None:
        if self.used + size > self.limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.used += size


class _QuotaFile:
    """A file object whose writes are charged to the quota."""

    def __init__(self, handle: Any, quota: Quota) -> None:
        self._handle = handle
        self._quota = quota

    def write(self, data: Any) -> int:
        self._quota.charge(len(data))
        return int(self._handle.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _QuotaFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handle.close()

    def __iter__(self) -> Any:
        return iter(self._handle)


def install(root: Path, limit: int) -> Quota:
    quota = Quota(root, limit)

    def quota_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = _real_open(file, mode, *args, **kwargs)
        if any(flag in mode for flag in "wxa+") and quota.covers(file):
            return _QuotaFile(handle, quota)
        return handle

    def quota_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        descriptor = _real_os_open(path, flags, *args, **kwargs)
        if flags & (os.O_WRONLY | os.O_RDWR) and quota.covers(path):
            quota.descriptors.add(descriptor)
        else:
            quota.descriptors.discard(descriptor)
        return descriptor

    def quota_os_write(descriptor: int, data: Any) -> int:
        if descriptor in quota.descriptors:
            quota.charge(len(data))
        return _real_os_write(descriptor, data)

    builtins.open = quota_open
    os.open = quota_os_open  # type: ignore[assignment]
    os.write = quota_os_write
    return quota


def main() -> None:
    root, limit, *arguments = sys.argv[1:]
    install(Path(root), int(limit))
    from m365lake.cli import main as m365lake_main

    sys.argv = ["m365lake", *arguments]
    m365lake_main()


if __name__ == "__main__":
    main()

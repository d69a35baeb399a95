"""Recognise a full disk under the lake and turn it into one error for the whole run.

When the lake's file system is full, every container's run fails the same way, so
reporting each one and going on to the next workload only repeats the failure. A backup
stops with ``LakeFullError`` instead, which names the lake and says what to do.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from pathlib import Path

from m365lake.errors import LakeFullError

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""No space left on the device, and a disk quota used up."""


def disk_full_error(error: BaseException) -> OSError | None:
    """Return the ENOSPC or EDQUOT error behind ``error`` (itself or a cause), or None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


def raise_if_disk_full(root: Path, outcomes: Iterable[object], containers: str) -> None:
    """Raise LakeFullError when any outcome failed because the lake's disk is full.

    ``outcomes`` are the results and exceptions of the run's containers, and
    ``containers`` names them in the message ("mailboxes", "drives").
    """
    failures = [disk_full_error(o) for o in outcomes if isinstance(o, BaseException)]
    full = [error for error in failures if error is not None]
    if not full:
        return
    raise LakeFullError(
        f"the file system holding the lake at {root} is full ({full[0].strerror}), so "
        f"{len(full)} {containers} could not be archived. Each kept its last commit and "
        "the lake is consistent. Free space there or move the lake to a larger disk, then "
        "run the backup again: it continues from the last commits"
    ) from full[0]
